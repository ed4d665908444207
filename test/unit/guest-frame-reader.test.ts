// Guest frames out of a byte stream, however it is cut; and, fuzzed, that nothing a guest sends
// makes the host's reader or decoder throw anything but their own error, or hold or allocate more
// than a frame's limit.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { SocklbError } from '../../src/errors.js';
import { FrameReader } from '../../src/guest/frame-reader.js';
import { decodeGuestMessage, FRAME_HEADER_SIZE, FRAME_TYPES, LIMITS, type RawFrame } from '../../src/guest/wire.js';
import { ackPayload, DESCRIPTORS, guestFrame, helloPayload, loadedPayload } from './guest-wire-fixtures.js';

const HELLO = guestFrame(FRAME_TYPES.hello, helloPayload());
const LOADED = guestFrame(FRAME_TYPES.loaded, loadedPayload(0, '', DESCRIPTORS));
const ACK = guestFrame(FRAME_TYPES.ack, ackPayload(1n, 2n, 0, 0xffffffff, 0xffffffff));
const STREAM = Buffer.concat([HELLO, LOADED, ACK, guestFrame(0x42, Buffer.alloc(0))]);
const EXPECTED: RawFrame[] = [
  { type: FRAME_TYPES.hello, payload: HELLO.subarray(5) },
  { type: FRAME_TYPES.loaded, payload: LOADED.subarray(5) },
  { type: FRAME_TYPES.ack, payload: ACK.subarray(5) },
  { type: 0x42, payload: Buffer.alloc(0) },
];

function readAll(reader: FrameReader, chunks: Buffer[]): RawFrame[] {
  return chunks.flatMap((chunk) => reader.push(chunk));
}

/** `bytes` cut at `cuts` (offsets, any order). */
function cut(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set([0, ...cuts.map((point) => point % (bytes.length + 1)), bytes.length])].sort((a, b) => a - b);
  return points.slice(1).map((end, index) => bytes.subarray(points[index], end));
}

describe('FrameReader', () => {
  it('reads several frames from one chunk', () => {
    assert.deepEqual(new FrameReader().push(STREAM), EXPECTED);
  });

  it('reads the same frames one byte at a time', () => {
    const reader = new FrameReader();
    assert.deepEqual(
      readAll(
        reader,
        [...STREAM].map((byte) => Buffer.from([byte])),
      ),
      EXPECTED,
    );
    assert.equal(reader.bufferedBytes, 0);
  });

  it('reads the same frames however the stream is cut', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 20 }), (cuts) =>
        assert.deepEqual(readAll(new FrameReader(), cut(STREAM, cuts)), EXPECTED),
      ),
    );
  });

  it('holds a partial frame until its last byte', () => {
    const reader = new FrameReader();
    assert.deepEqual(reader.push(HELLO.subarray(0, HELLO.length - 1)), []);
    assert.equal(reader.bufferedBytes, HELLO.length - 1);
    assert.deepEqual(reader.push(HELLO.subarray(HELLO.length - 1)), [EXPECTED[0]]);
  });

  it('refuses a length over the limit from the header, and every chunk after it', () => {
    const reader = new FrameReader({ maxPayload: 100 });
    const header = Buffer.from([101, 0, 0, 0, 1]);
    const error = { code: 'SOCKLB_ERR_GUEST_WIRE', message: 'guest frame length 101: over its limit of 100' };
    assert.throws(() => reader.push(header), error);
    assert.equal(reader.bufferedBytes, 0);
    assert.throws(() => reader.push(ACK), error);
  });

  it('with awaitHello, skips what comes before a HELLO (a serial port whose host came back)', () => {
    const reader = new FrameReader({ awaitHello: true });
    const stale = Buffer.concat([ACK.subarray(9), ACK, Buffer.from('junk')]);
    assert.deepEqual(readAll(reader, cut(Buffer.concat([stale, HELLO, ACK]), [3, 17, 40, 41])), [EXPECTED[0], EXPECTED[2]]);
  });

  it('with awaitHello, holds no more than the start of a HELLO while skipping', () => {
    const reader = new FrameReader({ awaitHello: true });
    assert.deepEqual(reader.push(Buffer.alloc(10_000, 0x01)), []);
    assert.ok(reader.bufferedBytes < 9, `${reader.bufferedBytes} bytes held`);
  });
});

describe('fuzzed guest input', () => {
  // Static factories that never read `this`: kept to be put back after each test.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const realAllocUnsafe = Buffer.allocUnsafe;
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const realAlloc = Buffer.alloc;
  let largestAllocation = 0;

  // Every buffer the reader and the decoder ask for, measured: the limits bound allocations, not only what is kept.
  beforeEach(() => {
    largestAllocation = 0;
    Buffer.allocUnsafe = (size: number) => {
      largestAllocation = Math.max(largestAllocation, size);
      return realAllocUnsafe(size);
    };
    Buffer.alloc = (size: number, ...rest: Parameters<typeof Buffer.alloc> extends [number, ...infer R] ? R : never) => {
      largestAllocation = Math.max(largestAllocation, size);
      return realAlloc(size, ...rest);
    };
  });
  afterEach(() => {
    Buffer.allocUnsafe = realAllocUnsafe;
    Buffer.alloc = realAlloc;
  });

  const MAX_PAYLOAD = 4096;

  /** Feeds `chunks` to a reader and decodes what comes out; only SOCKLB_ERR_GUEST_WIRE may be thrown. */
  function survive(chunks: Buffer[], awaitHello: boolean): void {
    const reader = new FrameReader({ maxPayload: MAX_PAYLOAD, awaitHello });
    for (const chunk of chunks) {
      let frames: RawFrame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        assert.ok(error instanceof SocklbError && error.code === 'SOCKLB_ERR_GUEST_WIRE', String(error));
        return;
      } finally {
        assert.ok(reader.bufferedBytes <= FRAME_HEADER_SIZE + MAX_PAYLOAD, `${reader.bufferedBytes} bytes held`);
      }
      for (const frame of frames) {
        try {
          const message = decodeGuestMessage(frame);
          if (message.kind !== 'ack') assert.ok(message.maps.length <= LIMITS.maps);
        } catch (error) {
          assert.ok(error instanceof SocklbError && error.code === 'SOCKLB_ERR_GUEST_WIRE', String(error));
        }
      }
    }
    assert.ok(largestAllocation <= FRAME_HEADER_SIZE + MAX_PAYLOAD, `an allocation of ${largestAllocation} bytes`);
  }

  it('random bytes, cut anywhere', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 10 }), fc.boolean(), (bytes, cuts, awaitHello) =>
        survive(cut(Buffer.from(bytes), cuts), awaitHello),
      ),
      { numRuns: 2000 },
    );
  });

  it('valid frames with bytes flipped, cut out or inserted', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    );
    fc.assert(
      fc.property(
        fc.array(mutation, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.boolean(),
        (mutations, cuts, awaitHello) => {
          let bytes = Buffer.from(STREAM);
          for (const change of mutations) {
            const at = change.at % (bytes.length + 1);
            if (change.kind === 'flip') bytes[Math.min(at, bytes.length - 1)] = change.value;
            else if (change.kind === 'cut') bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + change.length)]);
            else bytes = Buffer.concat([bytes.subarray(0, at), change.bytes, bytes.subarray(at)]);
          }
          survive(cut(bytes, cuts), awaitHello);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('payloads of each guest type, random', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(FRAME_TYPES.hello, FRAME_TYPES.loaded, FRAME_TYPES.ack),
        fc.uint8Array({ maxLength: 400 }),
        (type, payload) => {
          try {
            decodeGuestMessage({ type, payload: Buffer.from(payload) });
          } catch (error) {
            assert.ok(error instanceof SocklbError && error.code === 'SOCKLB_ERR_GUEST_WIRE', String(error));
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
