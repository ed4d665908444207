// The socket iterators' thread (src/datapath/socket-iterators.ts), in this process: started by the
// first run only, stopped once idle, started again by the next run. Runs in a lab namespace.

import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { LoadedDatapath } from '../../src/datapath/loader.js';
import { cleanupPins } from '../../src/pins/cleanup.js';
import type { NetworkNamespace } from '../../src/kernel/netns.js';
import { SocketIterators } from '../../src/datapath/socket-iterators.js';
import { Lab, type Sandbox } from '../lab/lab.js';
import { missingPrivileges, testPinDirectory } from './support.js';

const BPF = (name: string) => fileURLToPath(new URL(`../../bpf/${name}`, import.meta.url));
const IDLE_STOP_MS = 300;

describe("the socket iterators' thread", { skip: missingPrivileges() }, () => {
  const lab = new Lab();
  const pinDir = testPinDirectory('iterators');
  let datapath: LoadedDatapath | undefined;
  let iterators: SocketIterators | undefined;
  let sandbox: Sandbox;
  let namespace: NetworkNamespace | undefined;

  before(async () => {
    await Lab.sweepStale();
    sandbox = await lab.addSandbox('s');
    const fd = openSync(sandbox.netnsPath, 'r');
    namespace = { fd, inode: fstatSync(fd).ino, pid: process.pid };
    datapath = LoadedDatapath.load(BPF('socklb.bpf.o'), pinDir);
  });
  after(async () => {
    iterators?.close();
    datapath?.close();
    if (namespace) closeSync(namespace.fd);
    cleanupPins(pinDir);
    await lab.close();
  });

  it('runs only between a run and its idle stop, and starts again for the next run', async () => {
    iterators = SocketIterators.load(BPF('socklb_iter.bpf.o'), datapath!.socketMaps, IDLE_STOP_MS);
    assert.equal(iterators.threadRunning, false, 'no thread before the first run');
    const expected = [{ netns: namespace!.inode, sockets: [] }];
    assert.deepEqual(await iterators.dump(['UDP', 'TCP'], [namespace!]), expected);
    assert.equal(iterators.threadRunning, true, 'kept after a run');
    await sleep(IDLE_STOP_MS * 3);
    assert.equal(iterators.threadRunning, false, 'stopped once idle');
    assert.deepEqual(await iterators.dump(['UDP', 'TCP'], [namespace!]), expected);
    assert.equal(iterators.threadRunning, true, 'started again by the next run');
  });
});
