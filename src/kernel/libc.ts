// The few libc functions socklb calls, through koffi, and the errno that koffi keeps of the last
// call (libbpf's or libc's) on this thread.

import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const libcCalls = {
  mount: libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)') as (
    source: string,
    target: string,
    fstype: string,
    flags: number,
    data: string | null,
  ) => number,
  close: libc.func('int close(int fd)') as (fd: number) => number,
  /** For AF_VSOCK, which node:net cannot make (vsock.ts). */
  socket: libc.func('int socket(int domain, int type, int protocol)') as (domain: number, type: number, protocol: number) => number,
  bind: libc.func('int bind(int fd, const uint8_t *address, uint32_t length)') as (fd: number, address: Buffer, length: number) => number,
  getpeername: libc.func('int getpeername(int fd, _Out_ uint8_t *address, _Inout_ uint32_t *length)') as (
    fd: number,
    address: Buffer,
    length: number[],
  ) => number,
  /** Moves the calling thread (only) into the namespace of `fd`. */
  setns: libc.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number,
  /** Returns the free pages of every malloc arena to the kernel (src/agent/malloc-trim.ts). */
  mallocTrim: libc.func('int malloc_trim(size_t pad)') as (pad: number) => number,
};

/** Renders a printf-like message with its va_list: libbpf's print callback gets one (libbpf.ts). */
export const vsnprintf = libc.func('int vsnprintf(_Out_ uint8_t *buffer, size_t size, const char *format, void *args)') as (
  buffer: Buffer,
  size: number,
  format: string,
  args: unknown,
) => number;

/** errno of the last call made through koffi on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}
