// The shape of the generated rulesets; that the kernel accepts them is what the benchmark itself
// shows (it fails loudly when iptables-restore or nft refuses a line).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildCatalog, churnEndpoints, withEndpoints } from '../catalog.js';
import { renderIptablesSync } from '../kube-proxy/iptables-rules.js';
import { iptablesServiceChain } from '../kube-proxy/names.js';
import { nftablesEndpointChains, renderNftablesPartialSync, renderNftablesSync } from '../kube-proxy/nftables-rules.js';

const catalog = buildCatalog({ services: 10, endpointsPerService: 2, backendIPs: ['10.244.0.2', '10.244.0.3'] });
const httpChain = iptablesServiceChain({ namespace: 'default', name: 'bench-http', port: 'http', protocol: 'tcp' });

describe('kube-proxy iptables ruleset', () => {
  const rules = renderIptablesSync(catalog).split('\n');

  it('captures every service port in KUBE-SERVICES, bench-http not first, the nodeports rule last', () => {
    const captures = rules.filter((line) => line.startsWith('-A KUBE-SERVICES'));
    assert.equal(captures.length, 11 + 1); // bench-udp has two ports
    assert.ok(captures.findIndex((line) => line.includes(httpChain)) > 0);
    assert.match(captures.at(-1) ?? '', /KUBE-NODEPORTS$/);
  });

  it('spreads bench-http over its endpoints with statistic probabilities, then DNATs', () => {
    const svc = rules.filter((line) => line.startsWith(`-A ${httpChain} `));
    assert.match(svc[0] ?? '', /! -s 10\.128\.0\.0\/9 -j KUBE-MARK-MASQ$/);
    assert.match(svc[1] ?? '', /-m statistic --mode random --probability 0\.5000000000 -j KUBE-SEP-[A-Z2-7]{16}$/);
    assert.match(svc[2] ?? '', /-j KUBE-SEP-[A-Z2-7]{16}$/);
    const sep = svc[2]?.split(' ').at(-1);
    assert.ok(
      rules.includes(`-A ${sep} -m comment --comment "default/bench-http:http" -m tcp -p tcp -j DNAT --to-destination 10.244.0.3:8080`),
    );
  });

  it('drops the endpoint comments above 1000 endpoints, as kube-proxy does', () => {
    const large = renderIptablesSync(buildCatalog({ services: 600, endpointsPerService: 2, backendIPs: ['10.244.0.2', '10.244.0.3'] }));
    assert.doesNotMatch(large, /-A KUBE-SEP-\S+ -m comment/);
  });

  it('a partial sync writes KUBE-SERVICES whole but only the changed Service chains', () => {
    const changed = withEndpoints(catalog, catalog.churn, churnEndpoints(catalog.churn, 1));
    const partial = renderIptablesSync(changed, { changed: new Set(['bench-churn']) }).split('\n');
    assert.equal(partial.filter((line) => line.startsWith('-A KUBE-SERVICES')).length, 12);
    assert.ok(!partial.some((line) => line.startsWith(`-A ${httpChain}`)));
    assert.equal(partial.filter((line) => line.startsWith(':KUBE-SVC-')).length, 1);
  });
});

describe('kube-proxy nftables ruleset', () => {
  const rules = renderNftablesSync(catalog);

  it('dispatches through the service-ips verdict map to per-service chains with numgen', () => {
    assert.match(
      rules,
      /add element ip kube-proxy service-ips \{ 10\.96\.\d+\.\d+ \. tcp \. 80 : goto service-[A-Z2-7]{8}-default\/bench-http\/tcp\/http \}/,
    );
    assert.match(
      rules,
      /add rule ip kube-proxy service-[A-Z2-7]{8}-default\/bench-http\/tcp\/http numgen random mod 2 vmap \{ 0 : goto endpoint-\S+ , 1 : goto endpoint-\S+ \}/,
    );
    assert.match(
      rules,
      /add rule ip kube-proxy endpoint-[A-Z2-7]{8}-default\/bench-http\/tcp\/http__10\.244\.0\.2\/8080 meta l4proto tcp dnat to 10\.244\.0\.2:8080/,
    );
  });

  it('a partial sync writes only the changed Service and flushes the stale endpoint chain', () => {
    const after = churnEndpoints(catalog.churn, 1);
    const changed = withEndpoints(catalog, catalog.churn, after);
    const stale = nftablesEndpointChains(catalog.churn).filter((chain) => !nftablesEndpointChains(changed.churn).includes(chain));
    assert.equal(stale.length, 1);
    const partial = renderNftablesPartialSync(changed, new Set(['bench-churn']), stale);
    assert.doesNotMatch(partial, /add table|add element|bench-http/);
    assert.match(partial, new RegExp(`flush chain ip kube-proxy ${stale[0]?.replaceAll('.', '\\.')}\\n$`));
  });
});
