// What `socklb oci-hook` reads: the container state an OCI runtime writes to a hook's stdin
// (runtime-spec runtime.md "State"), which stage the hook runs at, and the container's cgroup.
// Pure, for the unit tests; the hook's I/O is in src/cli/sandbox.ts.

import { SocklbError } from '../errors.js';
import { cgroup2Root } from '../kernel/mounts.js';

export interface ContainerState {
  ociVersion: string;
  id: string;
  /** creating, created, running or stopped (a runtime may add others). */
  status: string;
  /** The container's process as the host sees it; absent once it is stopped. */
  pid?: number;
  bundle: string;
  annotations: Record<string, string>;
}

/**
 * The hooks the command can stand for. All run in the runtime's namespaces (runtime-spec
 * config.md, "POSIX-platform Hooks"), where the agent's control socket and the host's /proc are;
 * createContainer and startContainer run in the container's, so they are not offered.
 */
export const HOOK_STAGES = ['prestart', 'createRuntime', 'poststart', 'poststop'] as const;
export type HookStage = (typeof HOOK_STAGES)[number];

export type HookAction = 'register' | 'unregister';

/**
 * The annotation a microVM runtime (Kata, firecracker-containerd, a Virtual Kubelet provider)
 * sets on a sandbox whose Services go to the applier in its guest: the guest's address
 * (`unix:PATH`, `serial:PATH` or `vsock:CID`, src/guest/address.ts), registered in place of a cgroup.
 */
export const GUEST_ANNOTATION = 'socklb.io/guest';

/** The guest address the container's annotations name; undefined for a container of this kernel. */
export function guestOf(state: ContainerState): string | undefined {
  const address = state.annotations[GUEST_ANNOTATION];
  if (address === undefined) return undefined;
  if (typeof address !== 'string' || address === '')
    throw stateError(`annotation ${GUEST_ANNOTATION} of container ${state.id} is not an address`);
  return address;
}

export function parseContainerState(text: string): ContainerState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw stateError(`${JSON.stringify(text.slice(0, 60))} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw stateError('not a JSON object');
  const fields = value as Record<string, unknown>;
  for (const name of ['ociVersion', 'id', 'status', 'bundle']) {
    if (typeof fields[name] !== 'string' || fields[name] === '') throw stateError(`field "${name}" is missing or not a string`);
  }
  const pid = fields['pid'];
  if (pid !== undefined && (!Number.isInteger(pid) || (pid as number) < 0))
    throw stateError(`field "pid" ${JSON.stringify(pid)} is not a process id`);
  const annotations = fields['annotations'] ?? {};
  if (typeof annotations !== 'object' || annotations === null || Array.isArray(annotations))
    throw stateError('field "annotations" is not an object');
  return {
    ociVersion: fields['ociVersion'] as string,
    id: fields['id'] as string,
    status: fields['status'] as string,
    // runc writes no pid once stopped, others write 0.
    ...(pid === undefined || pid === 0 ? {} : { pid: pid as number }),
    bundle: fields['bundle'] as string,
    annotations: annotations as Record<string, string>,
  };
}

/**
 * Register or unregister: from the stage when the hook is given one (`socklb oci-hook poststop`),
 * else from the state's status, which each stage's runtime sets (creating at createRuntime,
 * created or running at poststart, stopped at poststop).
 */
export function hookAction(stage: HookStage | undefined, state: ContainerState): HookAction {
  if (stage !== undefined) return stage === 'poststop' ? 'unregister' : 'register';
  switch (state.status) {
    case 'creating':
    case 'created':
    case 'running':
      return 'register';
    case 'stopped':
      return 'unregister';
    default:
      throw stateError(
        `container ${state.id} has status ${JSON.stringify(state.status)}; ` +
          `give the stage (\`socklb oci-hook createRuntime\` or \`poststop\`)`,
      );
  }
}

/**
 * The process's cgroup v2 directory: its "0::<path>" line of /proc/PID/cgroup, below the cgroup v2
 * mount found in `mountinfo`. The path is relative to the reader's cgroup namespace, which for a
 * hook is the runtime's: the host's.
 */
export function cgroupOfProcess(pid: number, procCgroup: string, mountinfo: string): string {
  const line = procCgroup.split('\n').find((entry) => entry.startsWith('0::'));
  if (line === undefined)
    throw new SocklbError(
      'SOCKLB_ERR_CGROUP',
      `process ${pid} is in no cgroup v2 (no "0::" line in /proc/${pid}/cgroup); socklb attaches to cgroup v2 only`,
    );
  const path = line.slice(3);
  if (!path.startsWith('/') || path.endsWith(' (deleted)'))
    throw new SocklbError('SOCKLB_ERR_CGROUP', `process ${pid}: cgroup ${JSON.stringify(path)} in /proc/${pid}/cgroup is not a live path`);
  // Attaching to the root would translate every process of the host.
  if (path === '/')
    throw new SocklbError(
      'SOCKLB_ERR_CGROUP',
      `process ${pid} is in the cgroup v2 root: its container has no cgroup of its own to attach to (set linux.cgroupsPath)`,
    );
  return `${cgroup2Root(mountinfo)}${path}`;
}

function stateError(reason: string): SocklbError {
  return new SocklbError('SOCKLB_ERR_OCI_STATE', `OCI container state on stdin: ${reason}`);
}
