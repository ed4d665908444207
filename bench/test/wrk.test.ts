import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseIperfReport } from '../iperf.js';
import { parseWrkReport, wrkArgv } from '../../test/lab/wrk.js';

describe('load generators', () => {
  it('runs wrk under the hard open-file limit, with Connection: close when asked, spreading through WRK_SPREAD', () => {
    const argv = wrkArgv(
      {
        url: 'http://10.96.0.13:80/',
        threads: 2,
        connections: 2000,
        seconds: 5,
        closeEachConnection: true,
        spreadOver: ['10.244.0.2:8080', '10.244.0.3:8080'],
      },
      '/tmp/r.lua',
    );
    assert.deepEqual(argv.slice(0, 2), ['sh', '-c']);
    assert.match(argv[2] ?? '', /ulimit -n "\$n" && exec "\$@"/);
    assert.ok(argv.includes('WRK_SPREAD=10.244.0.2:8080,10.244.0.3:8080'));
    assert.deepEqual(argv.slice(-3), ['-H', 'Connection: close', 'http://10.96.0.13:80/']);
    assert.ok(
      !wrkArgv({ url: 'http://x/', threads: 1, connections: 1, seconds: 1, closeEachConnection: false }, '/r.lua').includes(
        'Connection: close',
      ),
    );
  });

  it("reads wrk's JSON line among its usual output", () => {
    const report = parseWrkReport(
      'Running 5s test\n  2 threads\nWRK_JSON {"durationUs":5000000,"requests":100000,"errors":{"connect":0,"read":3,"write":0,"status":0,"timeout":1},"latencyUs":{"mean":900.5,"p50":800,"p90":1200,"p99":3000,"max":9000}}\n',
    );
    assert.equal(report.requestsPerSecond, 20000);
    assert.equal(report.errors.read, 3);
    assert.throws(() => parseWrkReport('no report'), /no report/);
  });

  it("reads iperf3's UDP summary: received is sent less lost", () => {
    const report = parseIperfReport(JSON.stringify({ end: { sum: { packets: 1000, lost_packets: 100, seconds: 2 } } }));
    assert.deepEqual(report, { sentDatagrams: 1000, receivedDatagrams: 900, durationS: 2, receivedPerSecond: 450 });
    assert.throws(() => parseIperfReport(JSON.stringify({ error: 'unable to connect' })), /unable to connect/);
  });
});
