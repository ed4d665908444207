// The sandbox side of the command line: the registry and control socket `socklb run` serves,
// `socklb sandbox add|remove|list` to talk to it, and `socklb oci-hook` for OCI runtimes
// (docs/sandboxes.md).

import { Argument, type Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SocklbError } from '../errors.js';
import type { LoadedDatapath } from '../datapath/loader.js';
import type { Logger } from '../log.js';
import { claimControlSocket, DEFAULT_CONTROL_SOCKET, requestControl } from '../sandbox/control-socket.js';
import { cgroupOfProcess, guestOf, HOOK_STAGES, hookAction, parseContainerState, type HookStage } from '../sandbox/oci-state.js';
import { PinnedSandboxes } from '../sandbox/attachments.js';
import { sandboxDirectory, type GuestDirectory } from '../sandbox/directory.js';
import type { ControlRequest, SandboxEntry, TraceService } from '../sandbox/protocol.js';
import { checkServiceRef, SandboxRegistry } from '../sandbox/registry.js';
import { formatSandboxTable } from './tables.js';

/** Long enough for an agent busy with a large sync, short enough not to stall a container start. */
const DEFAULT_TIMEOUT_SECONDS = 5;

export const controlSocketOption = () =>
  new Option('--control-socket <path>', "the agent's root-only control socket for sandboxes (run: '' serves none)").default(
    DEFAULT_CONTROL_SOCKET,
  );

export interface SandboxService {
  readonly registry: SandboxRegistry;
  /** Starts answering on the control socket (none when it is ''), `socklb trace` by `tracing`. */
  serve(tracing?: TraceService): Promise<void>;
  /** Stops answering; the sandboxes stay attached. */
  close(): Promise<void>;
}

/**
 * The registry rebuilt from the pins of an earlier run. The control socket is claimed first, so
 * that a second agent started by mistake stops before it touches any attachment; requests are
 * held from then on and answered once `serve()` is called, when everything that may still fail
 * at start has been done.
 */
export async function adoptSandboxes(
  datapath: LoadedDatapath,
  guests: GuestDirectory,
  pinDirectory: string,
  controlSocket: string,
  logger: Logger,
): Promise<SandboxService> {
  const socket = controlSocket === '' ? undefined : await claimControlSocket(controlSocket, logger);
  const attachments = new PinnedSandboxes(datapath, pinDirectory);
  const { adopted, stale, notUpgraded } = attachments.adopt();
  for (const sandbox of adopted) logger.info(sandbox, `adopted sandbox ${sandbox.id}`);
  for (const { reason, ...sandbox } of stale) logger.warn({ ...sandbox, reason }, `removed sandbox ${sandbox.id}: ${reason}`);
  for (const { reason, ...sandbox } of notUpgraded) logger.warn({ ...sandbox, reason }, `sandbox ${sandbox.id}: ${reason}`);
  const registry = new SandboxRegistry(attachments, adopted);
  return {
    registry,
    async serve(tracing?: TraceService) {
      if (socket === undefined) return;
      socket.serve(sandboxDirectory(registry, guests), tracing);
      logger.info({ path: controlSocket }, 'serving the control socket');
    },
    close: async () => socket?.close(),
  };
}

interface ClientOptions {
  controlSocket: string;
  timeout: number;
}

export const timeoutOption = (description = 'how long to wait for the agent') =>
  new Option('--timeout <seconds>', description).default(DEFAULT_TIMEOUT_SECONDS).argParser((value) => {
    const seconds = Number(value);
    if (!(seconds > 0 && seconds <= 600))
      throw new SocklbError('SOCKLB_ERR_USAGE', `--timeout ${value}: not a number of seconds between 0 and 600`);
    return seconds;
  });

function send(options: ClientOptions, request: ControlRequest) {
  return requestControl(options.controlSocket, request, options.timeout * 1000);
}

function describe(sandbox: SandboxEntry, outcome: string): string {
  return `sandbox ${sandbox.id} ${outcome} (${'guest' in sandbox ? `guest ${sandbox.guest}` : `cgroup ${sandbox.cgroup}`})\n`;
}

/** Reads all of stdin, or fails after `timeoutMs`: a runtime that keeps stdin open must not hang the hook. */
async function readStdin(timeoutMs: number): Promise<string> {
  let text = '';
  const reading = (async () => {
    for await (const chunk of process.stdin) text += String(chunk);
    return text;
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SocklbError('SOCKLB_ERR_OCI_STATE', `OCI container state on stdin: not complete within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([reading, timeout]);
  } finally {
    clearTimeout(timer);
    process.stdin.destroy();
  }
}

function readProcCgroup(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch (error) {
    throw new SocklbError(
      'SOCKLB_ERR_OCI_STATE',
      `process ${pid} is gone (${(error as NodeJS.ErrnoException).code}): ` +
        `the hook must run while the container exists (createRuntime or poststart), in the host's pid namespace`,
    );
  }
}

async function ociHook(stage: HookStage | undefined, options: ClientOptions): Promise<void> {
  const state = parseContainerState(await readStdin(options.timeout * 1000));
  const action = hookAction(stage, state);
  try {
    const guest = guestOf(state);
    if (action === 'register' && guest !== undefined) {
      await send(options, { op: 'add', id: state.id, guest });
      return;
    }
    if (action === 'register') {
      if (state.pid === undefined)
        throw new SocklbError('SOCKLB_ERR_OCI_STATE', `OCI container state on stdin: no pid for status ${state.status}`);
      const cgroup = cgroupOfProcess(state.pid, readProcCgroup(state.pid), readFileSync('/proc/self/mountinfo', 'utf8'));
      await send(options, { op: 'add', id: state.id, cgroup });
      return;
    }
    await send(options, { op: 'remove', id: state.id });
  } catch (error) {
    // A container that never got registered (its create failed, or the agent found its cgroup
    // gone) has nothing to remove: poststop is cleanup, and cleanup is idempotent.
    if (error instanceof SocklbError && error.code === 'SOCKLB_ERR_NO_SANDBOX') return;
    if (error instanceof SocklbError) throw new SocklbError(error.code, `container ${state.id}: ${error.message}`, { cause: error });
    throw error;
  }
}

/** Adds `sandbox` and `oci-hook` to the command line. */
export function registerSandboxCommands(program: Command): void {
  const sandbox = program
    .command('sandbox')
    .description('add, remove and list the sandboxes a running agent serves (through its control socket)');
  sandbox
    .command('add')
    .description(
      "attach the datapath to a sandbox's cgroup, or stream it to a microVM guest's applier; " +
        'adding the same id and place again changes nothing',
    )
    .requiredOption('--id <id>', "the sandbox's id (a container id, for instance)")
    .addOption(new Option('--cgroup <path>', "the sandbox's cgroup v2 directory").conflicts('guest'))
    .addOption(
      new Option(
        '--guest <address>',
        "a microVM guest's stream: unix:PATH (hybrid vsock), vsock:CID (vhost-vsock, on run --guest-vsock-port) " +
          'or serial:PATH (virtio-serial chardev)',
      ).conflicts('cgroup'),
    )
    .addOption(
      new Option(
        '--no-translate',
        "leave the sandbox's own calls untranslated (a sidecar that captures them needs the Service address)",
      ).conflicts(['guest', 'excludeService']),
    )
    .addOption(
      new Option('--exclude-service <namespace/name>', "leave the sandbox's calls to this Service untranslated (repeatable)")
        .argParser((value: string, previous: string[] = []) => [
          ...previous,
          checkServiceRef(value, '--exclude-service', 'SOCKLB_ERR_USAGE'),
        ])
        .conflicts('guest'),
    )
    .addOption(controlSocketOption())
    .addOption(timeoutOption())
    .action(
      async (options: ClientOptions & { id: string; cgroup?: string; guest?: string; translate: boolean; excludeService?: string[] }) => {
        const place =
          options.guest !== undefined
            ? { guest: options.guest }
            : options.cgroup !== undefined
              ? { cgroup: resolve(options.cgroup) }
              : undefined;
        if (place === undefined) throw new SocklbError('SOCKLB_ERR_USAGE', 'sandbox add: give --cgroup or --guest');
        const bypass = {
          ...(options.translate ? {} : { noTranslate: true }),
          ...(options.excludeService ? { excludeServices: options.excludeService } : {}),
        };
        const response = await send(options, { op: 'add', id: options.id, ...place, ...bypass });
        if ('sandbox' in response) process.stdout.write(describe(response.sandbox, response.outcome));
      },
    );
  sandbox
    .command('remove')
    .description('detach the datapath from a sandbox and forget it')
    .requiredOption('--id <id>', "the sandbox's id")
    .addOption(controlSocketOption())
    .addOption(timeoutOption())
    .action(async (options: ClientOptions & { id: string }) => {
      const response = await send(options, { op: 'remove', id: options.id });
      if ('sandbox' in response) process.stdout.write(describe(response.sandbox, response.outcome));
    });
  sandbox
    .command('list')
    .description('print the registered sandboxes: their cgroups, or their guests and how their streams go')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addOption(controlSocketOption())
    .addOption(timeoutOption())
    .action(async (options: ClientOptions & { output: 'table' | 'json' }) => {
      const response = await send(options, { op: 'list' });
      const sandboxes = 'sandboxes' in response ? response.sandboxes : [];
      process.stdout.write(options.output === 'json' ? `${JSON.stringify(sandboxes, null, 2)}\n` : `${formatSandboxTable(sandboxes)}\n`);
    });

  program
    .command('oci-hook')
    .description(
      'an OCI runtime hook: registers the container (state on stdin) with the agent at createRuntime or poststart, ' +
        'unregisters it at poststop; a microVM sandbox annotated socklb.io/guest=ADDRESS (as sandbox add --guest) is registered as that guest',
    )
    .addArgument(new Argument('[stage]', "the hook it is configured as (default: from the state's status)").choices(HOOK_STAGES))
    .addOption(controlSocketOption())
    .addOption(timeoutOption())
    .action((stage: HookStage | undefined, options: ClientOptions) => ociHook(stage, options));
}
