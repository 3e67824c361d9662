"""Reads JUnit files with junitparser (Debian's python3-junitparser) as a CI system would and
prints, as JSON, what a consumer would get wrong: duplicate (classname, name) ids, counts on
<testsuites>/<testsuite> that differ from the testcases, suites without timestamp or hostname.
Usage: junit_check.py FILE...  (run by test/outputs.ts)"""
import json
import sys

from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite


def case_counts(suite):
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for case in suite:
        counts["tests"] += 1
        for result in case.result:
            if isinstance(result, Failure):
                counts["failures"] += 1
            elif isinstance(result, Error):
                counts["errors"] += 1
            elif isinstance(result, Skipped):
                counts["skipped"] += 1
    return counts


def declared(element):
    return {key: int(element._elem.get(key, "-1")) for key in ("tests", "failures", "errors", "skipped")}


def check(path):
    problems = []
    doc = JUnitXml.fromfile(path)
    suites = [doc] if isinstance(doc, TestSuite) else list(doc)
    seen = set()
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    cases = 0
    for suite in suites:
        counted = case_counts(suite)
        for key, value in counted.items():
            total[key] += value
        if declared(suite) != counted:
            problems.append(f"testsuite {suite.name!r} declares {declared(suite)} but holds {counted}")
        for attribute in ("timestamp", "hostname"):
            if not suite._elem.get(attribute):
                problems.append(f"testsuite {suite.name!r} has no {attribute}")
        for case in suite:
            cases += 1
            key = (case.classname, case.name)
            if key in seen:
                problems.append(f"duplicate testcase classname={case.classname!r} name={case.name!r}")
            seen.add(key)
    if not isinstance(doc, TestSuite) and declared(doc) != total:
        problems.append(f"testsuites declares {declared(doc)} but holds {total}")
    return {"file": path, "suites": len(suites), "cases": cases, "problems": problems}


print(json.dumps([check(path) for path in sys.argv[1:]]))
