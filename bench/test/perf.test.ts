import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareToDirect, parsePerfReport, perfMarkdown, type RecordedRun } from '../perf.js';

const REPORT = `# Samples: 15K of event 'cpu-clock:ppp'
#
#      Samples  Command          Symbol
# ............  ...............  .................................................
#
           120  wrk              [k] tcp_v4_connect
            40  nginx            [.] ngx_http_process_request
             7  V8 DefaultWorke  [.] Builtins_JSEntry
           900  swapper          [k] default_idle
`;

function run(datapath: RecordedRun['datapath'], operations: number, symbols: [string, string, number][]): RecordedRun {
  return {
    file: `${datapath}.data`,
    workload: 'short',
    datapath,
    services: 10,
    round: 1,
    operations,
    symbols: symbols.map(([command, symbol, samples]) => ({ command, symbol, samples })),
  };
}

describe('perf report', () => {
  it("reads perf's sample, command and symbol columns, commands with spaces too", () => {
    assert.deepEqual(parsePerfReport(REPORT), [
      { samples: 120, command: 'wrk', symbol: '[k] tcp_v4_connect' },
      { samples: 40, command: 'nginx', symbol: '[.] ngx_http_process_request' },
      { samples: 7, command: 'V8 DefaultWorke', symbol: '[.] Builtins_JSEntry' },
      { samples: 900, command: 'swapper', symbol: '[k] default_idle' },
    ]);
  });

  it('pools runs per datapath into samples per 1000 operations, leaving the idle loop out but not the work done on an idle CPU', () => {
    const [comparison, ...others] = compareToDirect([
      run('direct', 1000, [
        ['wrk', '[k] tcp_v4_connect', 100],
        ['swapper', '[k] default_idle', 500],
        ['swapper', '[k] pv_native_safe_halt', 70],
      ]),
      run('direct', 3000, [['nginx', '[k] tcp_v4_connect', 300]]),
      run('socklb', 2000, [
        ['wrk', '[k] tcp_v4_connect', 180],
        ['swapper', '[k] tcp_v4_connect', 20],
        ['wrk', '[k] bpf_lru_pop_free', 10],
      ]),
    ]);
    assert.equal(others.length, 0);
    assert.deepEqual(comparison!.runs, { direct: 2, socklb: 1 });
    assert.deepEqual(comparison!.total, { direct: 100, socklb: 105 });
    // A kernel symbol in several commands is one row: what a connection costs, wherever it runs.
    assert.deepEqual(comparison!.bySymbol.get('[k] tcp_v4_connect'), { direct: 100, socklb: 100 });
    assert.deepEqual(comparison!.bySymbol.get('[k] bpf_lru_pop_free'), { socklb: 5 });
    assert.equal(comparison!.bySymbol.has('[k] default_idle'), false);
    assert.equal(comparison!.bySymbol.has('[k] pv_native_safe_halt'), false);
  });

  it('keeps a user-space symbol with its program: an address means something only in its own', () => {
    const [comparison] = compareToDirect([
      run('direct', 1000, [
        ['wrk', '[.] 0x0000000000070e0f', 4],
        ['nginx', '[.] 0x0000000000070e0f', 6],
      ]),
    ]);
    assert.deepEqual([...comparison!.bySymbol.keys()], ['[.] 0x0000000000070e0f (wrk)', '[.] 0x0000000000070e0f (nginx)']);
  });

  it('shows, for each datapath, the symbols it spends most more on than direct', () => {
    const markdown = perfMarkdown(
      compareToDirect([
        run('direct', 1000, [
          ['wrk', '[k] tcp_v4_connect', 100],
          ['nginx', '[k] tcp_ack', 50],
        ]),
        run('socklb', 1000, [
          ['wrk', '[k] tcp_v4_connect', 101],
          ['wrk', '[k] bpf_lru_pop_free', 9],
          ['nginx', '[k] tcp_ack', 40],
        ]),
      ]),
    );
    assert.match(markdown, /## short, 10 Services/);
    assert.match(markdown, /direct 150\.00 \(1 run\), socklb 150\.00 \(1 run\)/);
    const rows = markdown.split('\n').filter((line) => line.startsWith('| `'));
    assert.deepEqual(rows, [
      '| `[k] bpf_lru_pop_free` | 0.00 | 9.00 | 9.00 |',
      '| `[k] tcp_v4_connect` | 100.00 | 101.00 | 1.00 |',
      '| `[k] tcp_ack` | 50.00 | 40.00 | -10.00 |',
    ]);
  });
});
