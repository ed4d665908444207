// deploy/ against the code: the ClusterRole grants exactly what the API
// source asks for, and the DaemonSet passes only flags socklb knows.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ENDPOINT_SLICES, NODES, SERVICE_CIDRS, SERVICES } from '../../src/sources/kubernetes.js';

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access --
   these tests walk the parsed YAML of deploy/ freely: a field that is missing fails them, which is the check */

const root = new URL('../../../', import.meta.url);
const documents = (file: string) =>
  parseAllDocuments(readFileSync(new URL(file, root), 'utf8')).map((document) => document.toJS() as Record<string, any>);

describe('deploy/', () => {
  it('grants list and watch on exactly the resources the API source reads', () => {
    const role = documents('deploy/rbac.yaml').find((document) => document.kind === 'ClusterRole');
    const granted = (role?.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[]).flatMap((rule) =>
      rule.apiGroups.flatMap((group) => rule.resources.map((resource) => `${group}/${resource}: ${[...rule.verbs].sort().join(',')}`)),
    );
    const read = [SERVICES, ENDPOINT_SLICES, NODES, SERVICE_CIDRS].map((resource) => {
      // /api/v1/services -> core group; /apis/discovery.k8s.io/v1/endpointslices -> discovery.k8s.io
      const parts = resource.path.split('/');
      const group = parts[1] === 'api' ? '' : (parts[2] as string);
      return `${group}/${parts[parts.length - 1]}: list,watch`;
    });
    assert.deepEqual(granted.sort(), read.sort());
  });

  it('passes the DaemonSet only flags that `socklb run` accepts', () => {
    const daemonSet = documents('deploy/daemonset.yaml').find((document) => document.kind === 'DaemonSet');
    const args = daemonSet?.spec.template.spec.containers[0].args as string[];
    const help = execFileSync(process.execPath, [fileURLToPath(new URL('build/src/cli/main.js', root)), 'run', '--help'], {
      encoding: 'utf8',
    });
    for (const arg of args) {
      const flag = arg.split('=')[0] as string;
      assert.ok(help.includes(`${flag} `), `socklb run knows ${flag}`);
    }
  });

  it('binds the ServiceAccount the DaemonSet runs as to the ClusterRole', () => {
    const rbac = documents('deploy/rbac.yaml');
    const binding = rbac.find((document) => document.kind === 'ClusterRoleBinding');
    const daemonSet = documents('deploy/daemonset.yaml').find((document) => document.kind === 'DaemonSet');
    assert.equal(binding?.roleRef.name, rbac.find((document) => document.kind === 'ClusterRole')?.metadata.name);
    assert.deepEqual(binding?.subjects[0], {
      kind: 'ServiceAccount',
      name: daemonSet?.spec.template.spec.serviceAccountName,
      namespace: daemonSet?.metadata.namespace,
    });
  });
});
