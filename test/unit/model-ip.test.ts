// Addresses and CIDRs as text and as the datapath's 16 bytes: canonical spellings, and bytes written in place
// (the map codecs' way) equal to bytes in a buffer of their own.

import assert from 'node:assert/strict';
import { isIPv4, isIPv6 } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalCidr, canonicalIP, ipFamily, ipToBytes, ipv4WithLeadingZeros, writeIP } from '../../src/model/ip.js';

describe('canonicalIP', () => {
  const cases: { rule: string; text: string; expected: string | undefined }[] = [
    { rule: 'an IPv4 address is its own canonical text', text: '10.96.0.10', expected: '10.96.0.10' },
    { rule: 'an IPv4 octet with a leading zero is no address (it reads as octal elsewhere)', text: '10.96.0.010', expected: undefined },
    { rule: 'leading zeros do not make an octet above 255 one', text: '10.96.0.0256', expected: undefined },
    { rule: 'an IPv4 octet above 255 is no address', text: '10.96.0.256', expected: undefined },
    { rule: 'IPv6 is lowercased, with its longest zero run as ::', text: 'FD00:0:0:0:0:0:0:A', expected: 'fd00::a' },
    { rule: 'IPv4-mapped IPv6 keeps its family', text: '::FFFF:10.0.0.1', expected: '::ffff:a00:1' },
    { rule: 'text that is no address is undefined', text: 'web.default', expected: undefined },
  ];
  for (const { rule, text, expected } of cases) test(rule, () => assert.equal(canonicalIP(text), expected));
});

describe('ipv4WithLeadingZeros', () => {
  const cases: { rule: string; text: string; expected: string | undefined }[] = [
    { rule: 'octets with leading zeros read as decimal, never octal', text: '010.001.002.009', expected: '10.1.2.9' },
    { rule: 'leading zeros do not make an octet above 255 one', text: '10.96.0.0256', expected: undefined },
    { rule: 'four octets, no more', text: '010.1.2.3.4', expected: undefined },
  ];
  for (const { rule, text, expected } of cases) test(rule, () => assert.equal(ipv4WithLeadingZeros(text), expected));
});

describe('ipFamily', () => {
  test("reads IPv4 as node:net's isIPv4 does, which it replaces for speed", () => {
    const nearlyDottedQuads = fc
      .array(fc.constantFrom(...'0123456789.'.split(''), '25', '255', '256', '00', '.0', ':', 'a', ' '), { maxLength: 20 })
      .map((parts) => parts.join(''));
    const octets = fc.array(fc.integer({ min: 0, max: 300 }).map(String), { minLength: 3, maxLength: 5 }).map((parts) => parts.join('.'));
    fc.assert(
      fc.property(fc.oneof(nearlyDottedQuads, octets, fc.ipV4(), fc.ipV6(), fc.string()), (text) => {
        assert.equal(ipFamily(text), isIPv4(text) ? 'IPv4' : isIPv6(text) ? 'IPv6' : undefined);
      }),
      { numRuns: 20000 },
    );
  });
});

describe('writeIP', () => {
  for (const address of ['10.244.0.2', '255.255.255.255', '0.0.0.0', 'fd00::1:2', '::ffff:1.2.3.4', '2001:db8::']) {
    test(`${address} written at an offset is ipToBytes(${address}), the bytes around it untouched`, () => {
      const into = Buffer.alloc(20, 0);
      into[0] = 0xaa;
      into[19] = 0xbb;
      writeIP(address, into, 2);
      assert.deepEqual(into.subarray(2, 18), ipToBytes(address));
      assert.equal(into[0], 0xaa);
      assert.equal(into[19], 0xbb);
    });
  }

  test('an IPv4 address is IPv4-mapped', () => assert.equal(ipToBytes('10.1.2.3').toString('hex'), '00000000000000000000ffff0a010203'));
  test('an IPv6 address is its groups in network order', () =>
    assert.equal(ipToBytes('fd00::1:2').toString('hex'), 'fd000000000000000000000000010002'));
});

describe('canonicalCidr', () => {
  const cases: [string, string | undefined][] = [
    ['10.96.0.0/12', '10.96.0.0/12'],
    ['10.96.0.5/12', '10.96.0.0/12'],
    ['10.111.255.255/12', '10.96.0.0/12'],
    ['FD00:96::1/112', 'fd00:96::/112'],
    ['::ffff:10.96.0.0/108', '10.96.0.0/12'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['10.96.0.0/33', undefined],
    ['10.96.0.0', undefined],
    ['10.96.0.0/12/1', undefined],
    ['fd00::/+64', undefined],
  ];
  for (const [text, expected] of cases) {
    test(`${text} -> ${String(expected)}`, () => assert.equal(canonicalCidr(text), expected));
  }
});
