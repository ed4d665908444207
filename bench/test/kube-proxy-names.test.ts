// The chain names must be kube-proxy's own: checked against names any cluster shows (the API
// server's and kube-dns's chains) and against the examples in kube-proxy's nftables proxier.go.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { base32, iptablesServiceChain, nftEndpointChain, nftServiceChain, portProtoHash } from '../kube-proxy/names.js';

describe('kube-proxy chain names', () => {
  it('base32 is RFC 4648 with the standard alphabet', () => {
    assert.equal(base32(Buffer.from('foobar')), 'MZXW6YTBOI');
    assert.equal(base32(Buffer.from('f')), 'MY');
  });

  it('iptables: KUBE-SVC hashes are the ones every cluster has', () => {
    assert.equal(portProtoHash('default/kubernetes:https', 'tcp'), 'NPX46M4PTMTKRN6Y');
    assert.equal(
      iptablesServiceChain({ namespace: 'kube-system', name: 'kube-dns', port: 'dns', protocol: 'udp' }),
      'KUBE-SVC-TCOU7JCQXEZGVUNU',
    );
    assert.equal(
      iptablesServiceChain({ namespace: 'kube-system', name: 'kube-dns', port: 'dns-tcp', protocol: 'tcp' }),
      'KUBE-SVC-ERIFXISQEP7F7OF4',
    );
  });

  it('nftables: service and endpoint chains match proxier.go examples', () => {
    const spn = { namespace: 'ns1', name: 'svc1', port: 'p80', protocol: 'tcp' } as const;
    assert.equal(nftServiceChain(spn), 'service-ULMVA6XW-ns1/svc1/tcp/p80');
    assert.equal(nftEndpointChain(spn, '10.180.0.1:80'), 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  });
});
