// Where the API source finds its cluster and credentials, in kubectl's order
// minus the home directory: --kubeconfig, then $KUBECONFIG, then the pod's
// service account. ~/.kube/config is not read: an agent started by root on a
// node must not pick up whichever cluster an administrator last used.
//
// @kubernetes/client-node is loaded only here, and only once an API source is
// chosen: it costs about 65 MiB of memory and a noticeable start-up time,
// which `socklb services` and an agent reading manifests need not pay.

import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { SocklbError } from '../errors.js';

export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface LoadedKubeConfig {
  config: KubeConfig;
  /** Where it came from, for logs: `--kubeconfig /etc/socklb/kubeconfig`. */
  origin: string;
}

/** The API configuration to use, or undefined when none is given (no path, no $KUBECONFIG, not in a pod). */
export async function loadKubeConfig(
  path: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedKubeConfig | undefined> {
  if (path !== undefined) return checked(`--kubeconfig ${path}`, (config) => config.loadFromFile(path));
  const files = (env.KUBECONFIG ?? '').split(delimiter).filter((file) => file !== '');
  if (files.length > 0) {
    // A list of files, merged; as in kubectl, the first file's current-context wins.
    return checked(`KUBECONFIG=${env.KUBECONFIG}`, (config, KubeConfigClass) => {
      files.forEach((file, i) => {
        if (i === 0) return config.loadFromFile(file);
        const next = new KubeConfigClass();
        next.loadFromFile(file);
        config.mergeConfig(next, config.currentContext !== undefined && config.currentContext !== '');
      });
    });
  }
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) {
    if (!existsSync(SERVICE_ACCOUNT_TOKEN)) {
      throw new SocklbError(
        'SOCKLB_ERR_USAGE',
        `in-cluster configuration: ${SERVICE_ACCOUNT_TOKEN} does not exist; ` +
          `give the pod a service account token (automountServiceAccountToken: true) or pass --kubeconfig`,
      );
    }
    return checked('in-cluster service account', (config) => config.loadFromCluster());
  }
  return undefined;
}

async function checked(origin: string, load: (config: KubeConfig, KubeConfigClass: typeof KubeConfig) => void): Promise<LoadedKubeConfig> {
  const { KubeConfig: KubeConfigClass } = await import('./client-node.js');
  const config = new KubeConfigClass();
  try {
    load(config, KubeConfigClass);
  } catch (error) {
    throw new SocklbError('SOCKLB_ERR_USAGE', `${origin}: cannot be loaded: ${(error as Error).message}`, { cause: error });
  }
  const cluster = config.getCurrentCluster();
  if (!cluster?.server) {
    throw new SocklbError('SOCKLB_ERR_USAGE', `${origin}: no current context with a cluster server; set current-context`);
  }
  return { config, origin };
}
