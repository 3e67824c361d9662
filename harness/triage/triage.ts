/**
 * Finds kernel crash reports in a console or dmesg log and gives each a stable title, the
 * way syzkaller's pkg/report does: the title names the kind and the function, never
 * addresses, PIDs or timestamps, so the same bug gets the same title in every run. The kinds
 * and their headers are in triage-rules.ts.
 *
 * Logs are read as a stream: TriageStream holds only a window of recent lines (the lookups a
 * title needs reach WINDOW_BEHIND lines back and WINDOW_AHEAD forward), each cut to
 * MAX_LINE_CHARS, and the reports found (at most MAX_REPORTS). Its memory does not grow with
 * the log.
 */
import { CORRUPTED, type LineWindow, MAY_BE_HEADER, RULES, type ReportKind, type Rule } from './rules.js';

export type { ReportKind } from './rules.js';

export interface CrashReport {
  kind: ReportKind;
  title: string;
  /** 1-based line number in the log given to triage(). */
  line: number;
  /** The matching line, timestamp stripped. */
  text: string;
  /** For WARN(): the message printed with it, when there is one. */
  message?: string;
}

/** Lines before a header a title may read: a WARN()'s message sits between "cut here" and it. */
export const WINDOW_BEHIND = 10;
/** Lines after a header a title or the trace's end may be looked for in. */
export const WINDOW_AHEAD = 200;
/** The kernel's own lines are under 1 KiB; longer ones are cut here so one huge line cannot fill memory. */
export const MAX_LINE_CHARS = 4096;
/** Reports kept; past it they are only counted (a log that floods one report still fits). */
export const MAX_REPORTS = 10_000;

/**
 * What a log writer puts before the kernel's own text, so a header is found wherever the log came
 * from: syslog's "Jan 18 14:36:32 host kernel: " (any month's name: journals are localised) or
 * its ISO-8601 form, `journalctl -o short-precise`, socklog's "kern.err: ", syslogd's wall
 * message " kernel:", `dmesg -x`'s "kern  :err   : ", a /dev/kmsg record "3,630,4135,-;". Only
 * the kernel's lines lose their prefix: a daemon's "host sudo[3291]: ..." keeps it, so it can
 * never be read as a header.
 */
const WRITER_PREFIX =
  /^(?:\S+ +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)(?: [^\s:]+)?? (?:kernel: ?|kern\.\w+: |(?=\d+,\d+,\d+,))|^ ?kernel: ?|^kern {0,2}:\w+ *: /;
/** A /dev/kmsg record's header: "level,sequence,microseconds,flags[,caller=T1];". */
const KMSG_RECORD = /^\d+,\d+,\d+,[-c][^;]*;/;
/**
 * The printk timestamp in its forms: "[  12.345678]", `dmesg -d`'s "[  +0.000219]", `dmesg -T`'s
 * "[Wed Dec 13 10:43:00 2023]", a paste that lost its "[" ("60836.026949] "), a "<4>" level
 * before it; then the caller id, "[ T1234]" or "[    C0]".
 */
const TIMESTAMP = /^\s*(?:<\d>)?(?:\[?\s*\+?\d+\.\d*\]|\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\])\s*(?:\[\s*[CT]\d+\]\s*)?/;
/** Where another printk's timestamp starts in the middle of a line: two writers interleaved. */
const EMBEDDED_TIMESTAMP = /(?<=.)(?=\[\s*\d+\.\d{6}\])/;
/** The kernel's first line, printed at time zero: seen twice in one machine's console, it rebooted. */
const BOOT_BANNER = /^\s*\[\s*0\.000000\]\s*(?:\[\s*T0\]\s*)?Linux version \S+/;

export function stripTimestamp(line: string): string {
  return line.replace(/\r$/, '').replace(WRITER_PREFIX, '').replace(KMSG_RECORD, '').replace(TIMESTAMP, '');
}

interface Entry {
  text: string;
  /** 1-based line of the log it came from (an interleaved line gives several entries). */
  line: number;
  banner: boolean;
}

export interface TriageOptions {
  /**
   * The log is one machine's console for one boot (as under QEMU's -no-reboot): a second
   * kernel banner means the kernel rebooted on its own. Off for a file, which may hold
   * several guests' boots one after another.
   */
  singleBoot?: boolean;
}

/** Reports in a log fed line by line; see the module comment for its memory bound. */
export class TriageStream {
  private readonly found: CrashReport[] = [];
  /** Reports past MAX_REPORTS, counted only. */
  omitted = 0;
  private entries: Entry[] = [];
  /** Index (in the stream of entries) of entries[0]. */
  private base = 0;
  /** Next entry to look at. */
  private next = 0;
  private lastEnd = -1;
  private lastKind?: ReportKind;
  private lastStart = -1;
  private banners = 0;
  private lineNumber = 0;

  constructor(private readonly options: TriageOptions = {}) {}

  /** One line of the log, without its newline. */
  push(raw: string): void {
    this.lineNumber++;
    const line = raw.length > MAX_LINE_CHARS ? raw.slice(0, MAX_LINE_CHARS) : raw;
    // Most lines have no second "[": skip the split's regex for them (the stream's hot path).
    for (const part of line.indexOf('[', 1) > 0 ? line.split(EMBEDDED_TIMESTAMP) : [line]) {
      this.entries.push({ text: stripTimestamp(part), line: this.lineNumber, banner: part.includes('Linux version') && BOOT_BANNER.test(part) });
    }
    while (this.next + WINDOW_AHEAD < this.base + this.entries.length) this.examine(this.found);
    const drop = this.next - WINDOW_BEHIND - this.base;
    // Dropped in batches: splice on every line would copy the window each time.
    if (drop > WINDOW_AHEAD) {
      this.entries = this.entries.slice(drop);
      this.base += drop;
    }
  }

  /** Lines held now (the window): bounded by WINDOW_BEHIND + 2 * WINDOW_AHEAD + 1 whatever the log's length. */
  get windowLines(): number {
    return this.entries.length;
  }

  /** Lines read so far. */
  get lines(): number {
    return this.lineNumber;
  }

  /** Every report, the last lines included: the log is complete. */
  end(): CrashReport[] {
    while (this.next < this.base + this.entries.length) this.examine(this.found);
    return this.found;
  }

  /** Reports so far, the lines still inside the look-ahead window included, without ending the stream. */
  snapshot(): CrashReport[] {
    const saved = { next: this.next, lastEnd: this.lastEnd, lastKind: this.lastKind, lastStart: this.lastStart, banners: this.banners, omitted: this.omitted };
    const reports = [...this.found];
    while (this.next < this.base + this.entries.length) this.examine(reports);
    Object.assign(this, saved);
    return reports;
  }

  private readonly at = (index: number) => this.entries[index - this.base]?.text;

  private examine(into: CrashReport[]): void {
    const index = this.next++;
    const entry = this.entries[index - this.base] as Entry;
    const w: LineWindow = { at: this.at, end: this.base + this.entries.length };
    const report = entry.banner ? this.bootBanner(entry) : this.header(w, index, entry);
    if (!report) return;
    if (into.length >= MAX_REPORTS) this.omitted++;
    else into.push(report);
  }

  private bootBanner(entry: Entry): CrashReport | undefined {
    this.banners++;
    if (!this.options.singleBoot || this.banners < 2) return undefined;
    this.lastKind = 'reboot';
    return { kind: 'reboot', title: 'unexpected kernel reboot', line: entry.line, text: entry.text };
  }

  private header(w: LineWindow, index: number, entry: Entry): CrashReport | undefined {
    const found = matchRule(entry.text);
    if (!found) return undefined;
    const { rule, m } = found;
    // One report per trace: the lines up to its end belong to it (traceEnd stops before any header that starts a new one).
    if (index <= this.lastEnd) return undefined;
    if (rule.foldWithin && this.lastKind && continuesKind(rule, this.lastKind) && index - this.lastStart <= rule.foldWithin) return undefined;
    const report: CrashReport = { kind: rule.kind, title: rule.title(m, w, index), line: entry.line, text: entry.text };
    if (rule.kind === 'WARNING' && !report.title.endsWith(CORRUPTED)) {
      const message = warnMessage(w, index);
      if (message) report.message = message;
    }
    this.lastEnd = traceEnd(w, index, rule.kind);
    this.lastKind = rule.kind;
    this.lastStart = index;
    return report;
  }
}

/** Reports in a whole log, in order. */
export function triage(log: string | string[], options: TriageOptions = {}): CrashReport[] {
  const stream = new TriageStream(options);
  for (const line of Array.isArray(log) ? log : log.split('\n')) stream.push(line);
  return stream.end();
}

/**
 * Reports in lines, with reports seen twice (dmesg and console) kept once, and kmemleak's
 * count line dropped when its reports themselves were read.
 */
export function triageSources(...sources: string[][]): CrashReport[] {
  const seen = new Set<string>();
  const reports = sources
    .flatMap((lines) => triage(lines))
    .filter((r) => {
      const key = `${r.kind}|${r.title}|${r.text}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  const leaksRead = reports.some((r) => r.kind === 'kmemleak' && r.title.startsWith('memory leak in '));
  return leaksRead ? reports.filter((r) => !(r.kind === 'kmemleak' && r.title.startsWith('memory leak (kmemleak summary'))) : reports;
}

function continuesKind(rule: Rule, kind: ReportKind): boolean {
  return rule.continues === 'any' || (rule.continues?.includes(kind) ?? false);
}

function matchRule(text: string): { rule: Rule; m: RegExpExecArray } | undefined {
  if (!MAY_BE_HEADER.test(text)) return undefined;
  for (const rule of RULES) {
    const m = rule.pattern.exec(text);
    if (m) return { rule, m };
  }
  return undefined;
}

/**
 * A WARN()'s message: on x86 it comes between "------------[ cut here ]------------" and the
 * "WARNING:" line (several lines if the format has several). Without a "cut here" close by,
 * the line just before.
 */
function warnMessage(w: LineWindow, index: number): string | undefined {
  const between: string[] = [];
  for (let j = index - 1; j >= Math.max(0, index - 8); j--) {
    const text = (w.at(j) ?? '').trim();
    if (/cut here/.test(text)) return between.length > 0 ? between.reverse().join('\n') : undefined;
    if (text) between.push(text);
  }
  const before = (w.at(index - 1) ?? '').trim();
  return before && !/cut here/.test(before) ? before : undefined;
}

/**
 * Index of the line ending the trace that starts at `start`: its "---[ end trace" or "====="
 * line, or the line before the next header that does not continue this report, or a bounded
 * window. So reports with no end marker (hung tasks, RCU stalls, lockdep) do not swallow the
 * ones after them, while the "Oops:" after a NULL dereference or the "kernel BUG at" after a
 * list corruption stay part of theirs.
 */
function traceEnd(w: LineWindow, start: number, kind: ReportKind): number {
  const last = Math.min(w.end, start + WINDOW_AHEAD);
  for (let i = start + 1; i < last; i++) {
    const text = w.at(i) ?? '';
    if (/---\[ end trace/.test(text) || /^={10,}/.test(text)) return i;
    const next = matchRule(text);
    if (next && !continuesKind(next.rule, kind)) return i - 1;
  }
  return Math.min(w.end - 1, start + 60);
}

/** A report a test declared it expects: kind plus a pattern over the title or message. */
export interface ExpectedReport {
  kind: ReportKind;
  match: RegExp;
}

export function isExpected(report: CrashReport, expected: ExpectedReport[]): boolean {
  return expected.some((e) => {
    // A /g or /y pattern keeps lastIndex between test() calls: start each from 0.
    const matches = (s: string) => {
      e.match.lastIndex = 0;
      return e.match.test(s);
    };
    return e.kind === report.kind && (matches(report.title) || matches(report.message ?? '') || matches(report.text));
  });
}
