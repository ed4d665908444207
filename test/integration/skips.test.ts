// What socklb leaves untranslated, end to end (docs/sandboxes.md, "Leaving calls untranslated"):
// a sandbox registered --no-translate whose sidecar captures its calls to 127.0.0.1 sees the
// Service address, as a mesh's proxy needs; --exclude-service leaves that Service alone and no
// other; a socket with the --skip-mark reaches the address it asked for; --skip-cgroup and
// --exclude-service DIR=NS/NAME on `run` reach a sandbox's child cgroups; a backend listening in
// the caller's own namespace is reached at the Service address, not translated into itself, and
// the datagrams of a UDP socket connected there stay there; a Service annotated socklb.io/skip is
// left alone; and all of it survives an agent's restart.
//
// The sidecar is Istio's shape: in each sandbox's namespace a route of the service range to lo
// (so nothing leaves the namespace) and an iptables REDIRECT of it to 127.0.0.1:15001, where a
// server answers with the original destination (SO_ORIGINAL_DST). A call socklb translated goes
// to the pod instead, which answers with its name.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Pod, Sandbox } from '../lab/lab.js';
import { waitForLine } from '../lab/processes.js';
import {
  assertOneSentence,
  endpointSlice,
  missingPrivileges,
  service,
  socklb,
  testControlSocket,
  waitForServices,
  writeManifest,
  type RunningAgent,
} from './support.js';
import { Testbed } from './testbed.js';

const WEB = '10.96.0.10';
const OTHER = '10.96.0.11';
const SKIPPED = '10.96.0.12';
const CACHE = '10.96.0.20';
const NEARBY = '10.96.0.21';
const NEARBY_PORT = 5300;
const SKIP_MARK = 0x200;
const SIDECAR_PORT = 15001;

/** Answers each connection with where it arrived and its original destination ('-' when not redirected). */
const SERVER = `
import selectors, socket, struct, sys
selector = selectors.DefaultSelector()
for bind in sys.argv[1:]:
    address, port = bind.rsplit(':', 1)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, int(port)))
    listener.listen(16)
    selector.register(listener, selectors.EVENT_READ)
print('ready', flush=True)
while True:
    for key, _ in selector.select():
        connection, _ = key.fileobj.accept()
        # Read first: closing with the request unread would answer with a reset.
        connection.recv(4096)
        try:
            port, ip = struct.unpack('!2xH4s8x', connection.getsockopt(socket.SOL_IP, 80, 16))
            original = '%s:%d' % (socket.inet_ntoa(ip), port)
        except OSError:
            original = '-'
        connection.sendall(('HTTP/1.0 200 OK\\r\\n\\r\\nat %s:%d original %s\\n' % (connection.getsockname() + (original,))).encode())
        connection.close()
`;

/** Answers every datagram to each ADDRESS:PORT with NAME. */
const UDP_SERVER = `
import selectors, socket, sys
selector = selectors.DefaultSelector()
for bind in sys.argv[2:]:
    address, port = bind.rsplit(':', 1)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((address, int(port)))
    selector.register(server, selectors.EVENT_READ)
print('ready', flush=True)
while True:
    for key, _ in selector.select():
        _, sender = key.fileobj.recvfrom(64)
        key.fileobj.sendto(sys.argv[1].encode(), sender)
`;

/**
 * SOCKETS AF_INET6 UDP sockets, each connected to the IPv4-mapped ADDRESS PORT, each sending 12
 * datagrams: one line per socket with the answers it got, each answer once ('timeout': none came;
 * an errno's name: the send or receive failed).
 */
const CONNECTED_UDP_CLIENT = `
import errno, socket, sys
address, port, sockets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(sockets):
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    client.settimeout(0.3)
    client.connect(('::ffff:' + address, port))
    answers = set()
    for _ in range(12):
        client.send(b'ping')
        try:
            answers.add(client.recv(64).decode())
        except socket.timeout:
            answers.add('timeout')
        except OSError as error:
            answers.add(errno.errorcode.get(error.errno, str(error.errno)))
    client.close()
    print(' '.join(sorted(answers)), flush=True)
`;

/**
 * One datagram to ADDRESS PORT from an unconnected socket, with a socket bound there first if a
 * third argument says 'receiver': 'received', 'sent' (nothing received), or the errno's name.
 */
const UDP_SEND = `
import errno, socket, sys
address, port = sys.argv[1], int(sys.argv[2])
receiver = None
if sys.argv[3:] == ['receiver']:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((address, port))
    receiver.settimeout(2)
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    client.sendto(b'ping', (address, port))
    print('received' if receiver and receiver.recv(64) == b'ping' else 'sent')
except OSError as error:
    print(errno.errorcode.get(error.errno, str(error.errno)))
`;

/** One HTTP request to ADDRESS PORT from a socket with SO_MARK MARK (0: none); prints the body or the error. */
const CLIENT = `
import errno, socket, sys
address, port, mark = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = socket.socket()
if mark:
    client.setsockopt(socket.SOL_SOCKET, 36, mark)
client.settimeout(3)
try:
    client.connect((address, port))
    client.sendall(b'GET / HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n')
    data = b''
    while True:
        chunk = client.recv(4096)
        if not chunk:
            break
        data += chunk
    print(data.decode().split('\\r\\n\\r\\n', 1)[1].strip())
except OSError as error:
    print('error', errno.errorcode.get(error.errno, 'timeout') if error.errno else 'timeout')
`;

describe('calls left untranslated', { skip: missingPrivileges(), concurrency: false }, () => {
  const bed = new Testbed('skips');
  const { lab, pinDir } = bed;
  const controlSocket = testControlSocket('skips');
  let pod: Pod;
  let mesh: Sandbox;
  let plain: Sandbox;
  let excluding: Sandbox;
  let cache: Sandbox;
  /** Child cgroups of `plain`: one the run leaves untranslated, one leaving default/web alone. */
  let skippedChild: string;
  let excludingChild: string;
  let agent: RunningAgent | undefined;

  const startAgent = () =>
    bed.startAgent(
      [
        '--manifests',
        bed.manifests,
        '--pin-dir',
        pinDir,
        '--sandboxes-only',
        // Every call left untranslated here is to that range, which socklb otherwise refuses.
        '--service-cluster-ip-range',
        '10.96.0.0/12',
        '--skip-same-netns',
        '--skip-mark',
        `0x${SKIP_MARK.toString(16)}`,
        '--skip-cgroup',
        skippedChild,
        '--exclude-service',
        `${excludingChild}=default/web`,
      ],
      { controlSocket },
    );
  const sandboxCommand = (args: string[]) => socklb(['sandbox', ...args, '--control-socket', controlSocket]);
  const add = async (sandbox: Sandbox, ...flags: string[]) => {
    const result = await sandboxCommand(['add', '--id', sandbox.name, '--cgroup', sandbox.cgroupPath, ...flags]);
    assert.equal(result.code, 0, result.stderr);
  };
  /** What one request from the sandbox (its cgroup, or `cgroup` below it) got. */
  const call = async (sandbox: Sandbox, address: string, port: number, { mark = 0, cgroup }: { mark?: number; cgroup?: string } = {}) => {
    const python = ['/usr/bin/python3', '-c', CLIENT, address, String(port), String(mark)];
    const argv = cgroup === undefined ? python : ['/bin/sh', '-c', `echo $$ > ${cgroup}/cgroup.procs && exec "$@"`, 'sh', ...python];
    const result = await lab.exec(sandbox, argv, { inCgroup: cgroup === undefined });
    return result.stdout.trim();
  };
  const sidecarSaw = (address: string, port = 80) => `at 127.0.0.1:${SIDECAR_PORT} original ${address}:${port}`;
  const startServer = async (sandbox: Sandbox, binds: string[]) => {
    const child = lab.spawn(sandbox, ['/usr/bin/python3', '-c', SERVER, ...binds], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForLine(child, 'ready', 5000);
  };
  const startUdpServer = async (target: Pod | Sandbox, name: string, binds: string[]) => {
    const child = lab.spawn(target, ['/usr/bin/python3', '-c', UDP_SERVER, name, ...binds], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForLine(child, 'ready', 5000);
  };
  /** Istio's capture: the service range routed to lo and redirected to the sidecar on 127.0.0.1. */
  const addSidecar = async (sandbox: Sandbox) => {
    await lab.exec(sandbox, ['ip', 'route', 'add', '10.96.0.0/12', 'dev', 'lo'], { inCgroup: false });
    await lab.exec(
      sandbox,
      ['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '10.96.0.0/12', '-j', 'REDIRECT', '--to-ports', String(SIDECAR_PORT)],
      { inCgroup: false },
    );
    await startServer(sandbox, [`127.0.0.1:${SIDECAR_PORT}`]);
  };

  before(async () => {
    await bed.prepare();
    [pod, mesh, plain, excluding, cache] = await Promise.all([
      lab.addPod('pod-a'),
      lab.addSandbox('mesh'),
      lab.addSandbox('plain'),
      lab.addSandbox('excluding'),
      lab.addSandbox('cache'),
    ]);
    skippedChild = join(plain.cgroupPath, 'skipped');
    excludingChild = join(plain.cgroupPath, 'excluding');
    await Promise.all([mkdir(skippedChild), mkdir(excludingChild)]);
    await lab.startEchoServer(pod, { name: 'pod-a', port: 8080 });
    await Promise.all([mesh, plain, excluding].map(addSidecar));
    // The node-local cache's shape: it listens on its own address, the Service's backend, and on
    // the Service address, held on lo.
    await lab.exec(cache, ['ip', 'address', 'add', `${CACHE}/32`, 'dev', 'lo'], { inCgroup: false });
    await startServer(cache, [`${cache.ipv4}:5353`, `${CACHE}:5353`]);
    // A UDP Service with two backends, one of them the cache, which also holds its address.
    await lab.exec(cache, ['ip', 'address', 'add', `${NEARBY}/32`, 'dev', 'lo'], { inCgroup: false });
    await Promise.all([
      startUdpServer(cache, 'cache', [`${cache.ipv4}:${NEARBY_PORT}`, `${NEARBY}:${NEARBY_PORT}`]),
      startUdpServer(pod, 'pod-a', [`${pod.ipv4}:${NEARBY_PORT}`]),
    ]);
    const skipped = service('skipped', [SKIPPED], [{ name: 'http', port: 80, targetPort: 8080 }]);
    skipped.metadata.annotations = { 'socklb.io/skip': 'true' };
    await writeManifest(join(bed.manifests, 'services.yaml'), [
      service('web', [WEB], [{ name: 'http', port: 80, targetPort: 8080 }]),
      endpointSlice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
      service('other', [OTHER], [{ name: 'http', port: 80, targetPort: 8080 }]),
      endpointSlice('other-a', 'other', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
      skipped,
      endpointSlice('skipped-a', 'skipped', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
      service('cache', [CACHE], [{ name: 'dns', port: 5353, targetPort: 5353 }]),
      endpointSlice('cache-a', 'cache', 'IPv4', [{ name: 'dns', port: 5353 }], [{ ip: cache.ipv4 }]),
      service('nearby', [NEARBY], [{ name: 'dns', port: NEARBY_PORT, protocol: 'UDP' }]),
      endpointSlice(
        'nearby-a',
        'nearby',
        'IPv4',
        [{ name: 'dns', port: NEARBY_PORT, protocol: 'UDP' }],
        [{ ip: cache.ipv4 }, { ip: pod.ipv4 }],
      ),
    ]);
    agent = await startAgent();
    await waitForServices(pinDir, (frontends) => frontends.length === 5);
    await add(mesh, '--no-translate');
    await add(plain);
    await add(excluding, '--exclude-service', 'default/web');
    await add(cache);
  });

  after(() => bed.close());

  it('translates a sandbox registered as usual: its sidecar never sees the Service', async () => {
    assert.equal(await call(plain, WEB, 80), 'pod-a');
  });

  it("--no-translate: the sidecar's redirect to 127.0.0.1 sees the Service address", async () => {
    assert.equal(await call(mesh, WEB, 80), sidecarSaw(WEB));
    assert.equal(await call(mesh, OTHER, 80), sidecarSaw(OTHER));
  });

  it('--exclude-service leaves that Service untranslated, and only it', async () => {
    assert.equal(await call(excluding, WEB, 80), sidecarSaw(WEB));
    assert.equal(await call(excluding, OTHER, 80), 'pod-a');
  });

  it('--skip-mark: a socket with the mark reaches the address it asked for; one without is translated', async () => {
    assert.equal(await call(plain, WEB, 80, { mark: SKIP_MARK }), sidecarSaw(WEB));
    assert.equal(await call(plain, WEB, 80, { mark: SKIP_MARK + 1 }), 'pod-a');
  });

  it("run's --skip-cgroup and --exclude-service DIR=NS/NAME reach a cgroup below a sandbox", async () => {
    assert.equal(await call(plain, WEB, 80, { cgroup: skippedChild }), sidecarSaw(WEB));
    assert.equal(await call(plain, WEB, 80, { cgroup: excludingChild }), sidecarSaw(WEB));
    assert.equal(await call(plain, OTHER, 80, { cgroup: excludingChild }), 'pod-a');
  });

  it("a backend listening in the caller's own namespace is reached at the Service address, not translated into itself", async () => {
    assert.equal(await call(cache, CACHE, 5353), `at ${CACHE}:5353 original -`);
    assert.equal(await call(plain, CACHE, 5353), `at ${cache.ipv4}:5353 original -`, 'from elsewhere: translated to the backend');
  });

  it('keeps the datagrams of a socket connected to an IPv4-mapped Service address where its connect sent them', async () => {
    // sendmsg4 runs for each of these datagrams, with the socket's peer as the destination: a
    // connect left at the Service address (its pick was the local backend) must not be balanced
    // again per datagram, or some go to pod-a, whose answers the connected socket drops.
    const { stdout } = await lab.exec(cache, ['/usr/bin/python3', '-c', CONNECTED_UDP_CLIENT, NEARBY, String(NEARBY_PORT), '16'], {
      timeoutMs: 60_000,
    });
    const sockets = stdout.trim().split('\n');
    assert.equal(sockets.length, 16, stdout);
    for (const answers of sockets) assert.ok(answers === 'cache' || answers === 'pod-a', `one socket's answers: ${answers}`);
    // Each connect picks one of two backends: 16 sockets reach both but once in 2^15 runs.
    assert.ok(sockets.includes('cache') && sockets.includes('pod-a'), `both backends reached: ${sockets.join(', ')}`);
  });

  it("lets the cache answer its own sandbox's clients at the Service address, and still refuses ports no one serves", async () => {
    // The cache's server runs in its sandbox's cgroup: its answers to the sockets above that
    // stayed at the Service address went to NEARBY at the client's port, which no Service serves;
    // a socket of its own namespace receives them, so they are answers, not calls.
    const send = async (...args: string[]) => (await lab.exec(cache, ['/usr/bin/python3', '-c', UDP_SEND, NEARBY, ...args])).stdout.trim();
    assert.equal(await send('9999'), 'ECONNREFUSED', 'a port no Service serves, and no socket here');
    assert.equal(await send('9999', 'receiver'), 'received', 'a socket of the namespace bound there');
  });

  it('leaves a Service annotated socklb.io/skip to whatever else handles it', async () => {
    assert.equal(await call(plain, SKIPPED, 80), sidecarSaw(SKIPPED), 'inside --service-cluster-ip-range, and not refused');
    assert.equal(await call(plain, SKIPPED, 81), 'error ECONNREFUSED', 'its cluster IP stays known: another port is refused');
  });

  it('shows what each sandbox leaves untranslated, and keeps it across a restart of the agent', async () => {
    const expected = [
      { id: 'cache', cgroup: cache.cgroupPath },
      { id: 'excluding', cgroup: excluding.cgroupPath, excludeServices: ['default/web'] },
      { id: 'mesh', cgroup: mesh.cgroupPath, noTranslate: true },
      { id: 'plain', cgroup: plain.cgroupPath },
    ];
    const list = async () => {
      const result = await sandboxCommand(['list', '-o', 'json']);
      assert.equal(result.code, 0, result.stderr);
      return JSON.parse(result.stdout) as unknown;
    };
    assert.deepEqual(await list(), expected);
    const table = await sandboxCommand(['list']);
    assert.match(table.stdout, /^excluding +\S+ +default\/web$/m);
    assert.match(table.stdout, /^mesh +\S+ +all$/m);
    assert.match(table.stdout, /^plain +\S+ +-$/m);
    await agent?.stop();
    agent = await startAgent();
    assert.deepEqual(await list(), expected);
    assert.equal(await call(mesh, WEB, 80), sidecarSaw(WEB));
    assert.equal(await call(excluding, WEB, 80), sidecarSaw(WEB));
    assert.equal(await call(excluding, OTHER, 80), 'pod-a');
  });

  it('refuses bad bypass requests in one sentence each', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['add', '--id', 'x', '--cgroup', mesh.cgroupPath, '--exclude-service', 'web'],
        /--exclude-service "web": not a Service as NAMESPACE\/NAME/,
      ],
      [
        ['add', '--id', 'mesh', '--cgroup', mesh.cgroupPath],
        /sandbox mesh is already registered with cgroup .*mesh, leaving all untranslated/,
      ],
      [
        ['add', '--id', 'vm', '--guest', 'unix:/run/x.sock', '--no-translate'],
        /option '--no-translate' cannot be used with option '--guest/,
      ],
    ];
    for (const [args, message] of cases) {
      const result = await sandboxCommand(args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr, message);
    }
    for (const [args, message] of [
      [['--skip-mark', '0'], /--skip-mark 0: not a socket mark from 1 to 0xffffffff/],
      [['--exclude-service', 'default/web'], /--exclude-service default\/web: not DIR=NAMESPACE\/NAME/],
      [['--skip-cgroup', `${mesh.cgroupPath}-missing`], /--skip-cgroup .*mesh-missing: no such cgroup directory/],
    ] as const) {
      const result = await socklb(['run', '--manifests', bed.manifests, '--pin-dir', `${pinDir}-unused`, ...args]);
      assert.equal(result.code, 1, args.join(' '));
      assertOneSentence(result.stderr);
      assert.match(result.stderr, message);
    }
  });
});
