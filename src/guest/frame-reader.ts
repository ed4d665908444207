// Frames out of a byte stream from a guest: chunks come as the socket gives them (half a header,
// several frames at once), frames go out whole. What is held is bounded whatever the guest sends:
// a length over the limit is refused from its header, before any of its payload is kept.

import { SocklbError } from '../errors.js';
import { FRAME_HEADER_SIZE, FRAME_TYPES, HELLO_MAGIC, LIMITS, type RawFrame } from './wire.js';

export interface FrameReaderOptions {
  /** The largest payload accepted; default LIMITS.guestPayload. */
  maxPayload?: number;
  /**
   * Discard bytes until a HELLO starts (its length, its type, its magic). For a serial port,
   * whose guest may have written frames, or part of one, to a host that has since gone: after its
   * RESYNC a host reads from the guest's next HELLO.
   */
  awaitHello?: boolean;
}

/** The first bytes of a HELLO: u32 length, then the type and the magic, which are fixed. */
const HELLO_PREFIX = Buffer.from([
  FRAME_TYPES.hello,
  HELLO_MAGIC & 0xff,
  (HELLO_MAGIC >>> 8) & 0xff,
  (HELLO_MAGIC >>> 16) & 0xff,
  HELLO_MAGIC >>> 24,
]);
const HELLO_START_SIZE = 4 + HELLO_PREFIX.length;
/** How much is looked at at once while skipping: what is copied, whatever the chunks. */
const SKIP_WINDOW = 4096;

export class FrameReader {
  readonly #maxPayload: number;
  #awaitingHello: boolean;
  /** Unread bytes, as the chunks came, from #offset into the first. */
  #chunks: Buffer[] = [];
  #offset = 0;
  #buffered = 0;
  #failure: SocklbError | undefined;

  constructor(options: FrameReaderOptions = {}) {
    this.#maxPayload = options.maxPayload ?? LIMITS.guestPayload;
    this.#awaitingHello = options.awaitHello ?? false;
  }

  /** Bytes held: at most FRAME_HEADER_SIZE + the largest payload. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /**
   * Takes the next chunk and returns the frames it completes. Throws (and keeps throwing: the
   * stream has lost its framing) when a header announces a payload over the limit.
   */
  push(chunk: Uint8Array): RawFrame[] {
    if (this.#failure) throw this.#failure;
    if (chunk.length > 0) {
      this.#chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#buffered += chunk.length;
    }
    if (this.#awaitingHello) this.#skipToHello();
    const frames: RawFrame[] = [];
    while (!this.#awaitingHello && this.#buffered >= FRAME_HEADER_SIZE) {
      const header = this.#peek(FRAME_HEADER_SIZE);
      const length = header.readUInt32LE(0);
      if (length > this.#maxPayload) {
        this.#failure = new SocklbError('SOCKLB_ERR_GUEST_WIRE', `guest frame length ${length}: over its limit of ${this.#maxPayload}`);
        this.#chunks = [];
        this.#buffered = 0;
        throw this.#failure;
      }
      if (this.#buffered < FRAME_HEADER_SIZE + length) break;
      this.#skip(FRAME_HEADER_SIZE);
      frames.push({ type: header.readUInt8(4), payload: this.#take(length) });
    }
    return frames;
  }

  /** Drops bytes up to the start of a HELLO, a window at a time; keeps what could be the start of one. */
  #skipToHello(): void {
    while (this.#buffered >= HELLO_START_SIZE) {
      const window = this.#peek(Math.min(this.#buffered, SKIP_WINDOW));
      for (let start = 0; start + HELLO_START_SIZE <= window.length; start++) {
        if (!window.subarray(start + 4, start + HELLO_START_SIZE).equals(HELLO_PREFIX)) continue;
        if (window.readUInt32LE(start) > this.#maxPayload) continue;
        this.#skip(start);
        this.#awaitingHello = false;
        return;
      }
      this.#skip(window.length - (HELLO_START_SIZE - 1));
    }
  }

  /** The first `size` buffered bytes, not consumed. */
  #peek(size: number): Buffer {
    const first = this.#chunks[0];
    if (first !== undefined && first.length - this.#offset >= size) return first.subarray(this.#offset, this.#offset + size);
    return this.#copy(size, false);
  }

  #take(size: number): Buffer {
    return this.#copy(size, true);
  }

  #skip(size: number): void {
    this.#copy(size, true, false);
  }

  /** Copies (when `keep`) the first `size` bytes out, consuming them when `consume`. */
  #copy(size: number, consume: boolean, keep = true): Buffer {
    const out = keep ? Buffer.allocUnsafe(size) : Buffer.alloc(0);
    let copied = 0;
    let index = 0;
    let offset = this.#offset;
    while (copied < size) {
      const chunk = this.#chunks[index] as Buffer;
      const step = Math.min(size - copied, chunk.length - offset);
      if (keep) chunk.copy(out, copied, offset, offset + step);
      copied += step;
      offset += step;
      if (offset === chunk.length) {
        index++;
        offset = 0;
      }
    }
    if (consume) {
      this.#chunks.splice(0, index);
      this.#offset = offset;
      this.#buffered -= size;
    }
    return out;
  }
}
