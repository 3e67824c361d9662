import type { TestRecord } from './record.js';

/**
 * The state-transition tests as a grid: suites/hotplug/state-matrix.ts names each one
 * `${backing}: from ${start}, write ${written}`, so a run's flat list of them becomes, per
 * backing, rows of start states and columns of written values.
 */
const STATE_CELL_TITLE = /^([a-z0-9_-]+): from ([a-z_]+), write ([a-z_]+)$/;

/** The order a kernel developer reads the state machine in; values not listed follow as seen. */
const START_ORDER = ['unplugged', 'offline', 'online', 'online_kernel', 'online_movable'];
const WRITTEN_ORDER = ['unplug', 'offline', 'online', 'online_kernel', 'online_movable', 'bogus'];

/** What a square shows: a known failure and a flaky pass are told apart from plain ones. */
export type SquareKind = 'pass' | 'fail' | 'known' | 'flaky' | 'skip';

export interface GridSquare {
  kind: SquareKind;
  test: TestRecord;
  /** The test's index in the cell's tests (the report's anchors use it). */
  index: number;
}

export interface StateGrid {
  backing: string;
  starts: string[];
  written: string[];
  /** Keyed by `${start} ${written}`; a combination no test covered has no square. */
  squares: Map<string, GridSquare>;
}

export function squareKind(t: TestRecord): SquareKind {
  if (t.status === 'fail') return t.known ? 'known' : 'fail';
  if (t.status === 'pass') return t.flaky ? 'flaky' : 'pass';
  return 'skip';
}

function ordered(values: Set<string>, order: string[]): string[] {
  const known = order.filter((v) => values.has(v));
  return [...known, ...[...values].filter((v) => !order.includes(v))];
}

/** One grid per backing that has state-transition tests, in the order the backings first appear. */
export function stateGrids(tests: TestRecord[]): StateGrid[] {
  const byBacking = new Map<string, { starts: Set<string>; written: Set<string>; squares: Map<string, GridSquare> }>();
  tests.forEach((test, index) => {
    const m = STATE_CELL_TITLE.exec(test.name);
    if (!m) return;
    const [, backing = '', start = '', written = ''] = m;
    const grid = byBacking.get(backing) ?? { starts: new Set<string>(), written: new Set<string>(), squares: new Map<string, GridSquare>() };
    byBacking.set(backing, grid);
    grid.starts.add(start);
    grid.written.add(written);
    grid.squares.set(`${start} ${written}`, { kind: squareKind(test), test, index });
  });
  return [...byBacking].map(([backing, g]) => ({
    backing,
    starts: ordered(g.starts, START_ORDER),
    written: ordered(g.written, WRITTEN_ORDER),
    squares: g.squares,
  }));
}
