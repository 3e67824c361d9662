"""Parses ktap.txt files with the kernel's own tools/testing/kunit/kunit_parser.py, the way
`kunit.py parse FILE` does, and prints the parsed counts as JSON (overall and per top-level
subtest). Usage: ktap_counts.py KUNIT_DIR FILE...  (run by test/outputs.ts)"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import kunit_parser  # noqa: E402  (from the kernel tree given above)
from kunit_printer import null_printer  # noqa: E402


def counts(test):
    c = test.counts
    return {"passed": c.passed, "failed": c.failed, "crashed": c.crashed, "skipped": c.skipped, "errors": c.errors}


def parse(path):
    with open(path, "r", errors="backslashreplace") as f:
        lines = f.read().splitlines()
    test = kunit_parser.parse_run_tests(lines, null_printer)
    return {
        "file": path,
        "status": test.status.name,
        "counts": counts(test),
        "subtests": [{"name": t.name, "status": t.status.name, "counts": counts(t)} for t in test.subtests],
    }


print(json.dumps([parse(path) for path in sys.argv[2:]]))
