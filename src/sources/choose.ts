// Which source `socklb run` reads: manifest files, or the Kubernetes API, never
// both. An explicit flag decides; without one, a configured cluster
// ($KUBECONFIG, or the pod's service account) means the API.

import { SocklbError } from '../errors.js';
import type { Logger } from '../log.js';
import { loadKubeConfig } from './kubeconfig.js';
import { KubernetesSource } from './kubernetes.js';
import { ManifestSource } from './manifests.js';
import type { Source } from './source.js';

export interface SourceFlags {
  manifests?: string;
  kubeconfig?: string;
  nodeName: string;
  serviceProxyName?: string;
}

export interface ChosenSource {
  source: Source;
  /** For logs: `--manifests /etc/socklb/services`, `in-cluster service account`... */
  origin: string;
}

// A label value: what the API server would accept in service.kubernetes.io/service-proxy-name.
const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

export async function chooseSource(flags: SourceFlags, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<ChosenSource> {
  if (flags.manifests !== undefined && flags.kubeconfig !== undefined) {
    throw new SocklbError('SOCKLB_ERR_USAGE', '--manifests and --kubeconfig are both given: socklb reads one source; drop one of them');
  }
  if (flags.manifests !== undefined)
    return { source: new ManifestSource({ path: flags.manifests }), origin: `--manifests ${flags.manifests}` };
  const loaded = await loadKubeConfig(flags.kubeconfig, env);
  if (!loaded) {
    throw new SocklbError(
      'SOCKLB_ERR_USAGE',
      'no source of Services: give --manifests PATH, or --kubeconfig PATH (or set KUBECONFIG, or run in a pod with a service account)',
    );
  }
  const { nodeName, serviceProxyName } = flags;
  if (nodeName === '') throw new SocklbError('SOCKLB_ERR_USAGE', '--node-name is empty: give the name of the Node this agent runs on');
  if (serviceProxyName !== undefined && !LABEL_VALUE.test(serviceProxyName)) {
    throw new SocklbError(
      'SOCKLB_ERR_USAGE',
      `--service-proxy-name ${JSON.stringify(serviceProxyName)}: ` +
        `not a label value (up to 63 letters, digits, "-", "_", ".", starting and ending with a letter or digit)`,
    );
  }
  return { source: new KubernetesSource({ kubeConfig: loaded.config, nodeName, serviceProxyName, logger }), origin: loaded.origin };
}
