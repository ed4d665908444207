// The libbpf 1.x functions socklb calls (Debian's libbpf1), through koffi. Declared once here,
// for the typed wrappers of src/kernel/bpf-objects.ts, src/pins/ and src/datapath/.
//
// libbpf 1.x returns NULL and sets errno from functions that return a
// pointer, and -errno from functions that return an int.

import koffi from 'koffi';
import { vsnprintf } from './libc.js';

// Declared by name so that the C prototypes below can use them.
for (const opaqueType of ['bpf_object', 'bpf_map', 'bpf_program', 'bpf_link', 'ring_buffer']) koffi.opaque(opaqueType);
export type BpfObjectHandle = { readonly __brand: 'bpf_object' };
export type BpfMapHandle = { readonly __brand: 'bpf_map' };
export type BpfProgramHandle = { readonly __brand: 'bpf_program' };
export type BpfLinkHandle = { readonly __brand: 'bpf_link' };
export type RingBufferHandle = { readonly __brand: 'ring_buffer' };

/** ring_buffer_sample_fn: called with each record during ring_buffer__consume, on its thread. */
export const ringSampleCallback = koffi.proto('int socklb_ring_sample(void *ctx, void *data, size_t size)');

const libbpfLibrary = koffi.load('libbpf.so.1');

// libbpf hands its messages to a printf-like callback; vsnprintf renders them.
const printCallback = koffi.proto('int socklb_libbpf_print(int level, const char *format, void *args)');
const libbpfSetPrint = libbpfLibrary.func('void *libbpf_set_print(void *fn)');

const f = (declaration: string) => libbpfLibrary.func(declaration);

export const libbpf = {
  objectOpenFile: f('bpf_object *bpf_object__open_file(const char *path, void *opts)') as (
    path: string,
    opts: null,
  ) => BpfObjectHandle | null,
  objectLoad: f('int bpf_object__load(bpf_object *obj)') as (object: BpfObjectHandle) => number,
  objectClose: f('void bpf_object__close(bpf_object *obj)') as (object: BpfObjectHandle) => void,
  objectNextMap: f('bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *map)') as (
    object: BpfObjectHandle,
    previous: BpfMapHandle | null,
  ) => BpfMapHandle | null,
  objectNextProgram: f('bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prog)') as (
    object: BpfObjectHandle,
    previous: BpfProgramHandle | null,
  ) => BpfProgramHandle | null,
  objectFindMap: f('bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)') as (
    object: BpfObjectHandle,
    name: string,
  ) => BpfMapHandle | null,
  objectFindProgram: f('bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)') as (
    object: BpfObjectHandle,
    name: string,
  ) => BpfProgramHandle | null,
  mapName: f('const char *bpf_map__name(bpf_map *map)') as (map: BpfMapHandle) => string,
  mapSetPinPath: f('int bpf_map__set_pin_path(bpf_map *map, const char *path)') as (map: BpfMapHandle, path: string) => number,
  mapFd: f('int bpf_map__fd(bpf_map *map)') as (map: BpfMapHandle) => number,
  mapSetMaxEntries: f('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)') as (
    map: BpfMapHandle,
    maxEntries: number,
  ) => number,
  mapReuseFd: f('int bpf_map__reuse_fd(bpf_map *map, int fd)') as (map: BpfMapHandle, fd: number) => number,
  programName: f('const char *bpf_program__name(bpf_program *prog)') as (program: BpfProgramHandle) => string,
  programAttachCgroup: f('bpf_link *bpf_program__attach_cgroup(bpf_program *prog, int cgroup_fd)') as (
    program: BpfProgramHandle,
    cgroupFd: number,
  ) => BpfLinkHandle | null,
  programAttachIter: f('bpf_link *bpf_program__attach_iter(bpf_program *prog, void *opts)') as (
    program: BpfProgramHandle,
    opts: null,
  ) => BpfLinkHandle | null,
  linkFd: f('int bpf_link__fd(bpf_link *link)') as (link: BpfLinkHandle) => number,
  /** A new run of an iterator: read the fd to its end. Walks the network namespace of the calling thread. */
  iterCreate: f('int bpf_iter_create(int link_fd)') as (linkFd: number) => number,
  linkOpen: f('bpf_link *bpf_link__open(const char *path)') as (path: string) => BpfLinkHandle | null,
  linkPin: f('int bpf_link__pin(bpf_link *link, const char *path)') as (link: BpfLinkHandle, path: string) => number,
  linkUpdateProgram: f('int bpf_link__update_program(bpf_link *link, bpf_program *prog)') as (
    link: BpfLinkHandle,
    program: BpfProgramHandle,
  ) => number,
  linkDetach: f('int bpf_link__detach(bpf_link *link)') as (link: BpfLinkHandle) => number,
  linkDestroy: f('int bpf_link__destroy(bpf_link *link)') as (link: BpfLinkHandle) => number,
  objGet: f('int bpf_obj_get(const char *path)') as (path: string) => number,
  progGetFdById: f('int bpf_prog_get_fd_by_id(uint32_t id)') as (id: number) => number,
  /** The ids of the programs attached to cgroup `targetFd` for `type`; *count in: room in programIds, out: how many there are. */
  progQuery: f(
    'int bpf_prog_query(int target_fd, int type, uint32_t query_flags, void *attach_flags, _Out_ uint8_t *prog_ids, _Inout_ uint32_t *prog_cnt)',
  ) as (targetFd: number, type: number, queryFlags: number, attachFlags: null, programIds: Buffer, count: number[]) => number,
  objGetInfoByFd: f('int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint32_t *info_len)') as (
    fd: number,
    info: Buffer,
    length: number[],
  ) => number,
  mapUpdateElem: f('int bpf_map_update_elem(int fd, const uint8_t *key, const uint8_t *value, uint64_t flags)') as (
    fd: number,
    key: Buffer,
    value: Buffer,
    flags: number,
  ) => number,
  mapLookupElem: f('int bpf_map_lookup_elem(int fd, const uint8_t *key, _Out_ uint8_t *value)') as (
    fd: number,
    key: Buffer,
    value: Buffer,
  ) => number,
  mapDeleteElem: f('int bpf_map_delete_elem(int fd, const uint8_t *key)') as (fd: number, key: Buffer) => number,
  /** Up to *count entries from in_batch on (NULL: the start); -ENOENT once the last are in. */
  mapLookupBatch: f(
    'int bpf_map_lookup_batch(int fd, const uint8_t *in_batch, _Out_ uint8_t *out_batch, _Out_ uint8_t *keys, _Out_ uint8_t *values, _Inout_ uint32_t *count, void *opts)',
  ) as (fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: number[], opts: null) => number,
  /** Writes the *count entries in order and stops at the first refused; *count is then how many were written. */
  mapUpdateBatch: f(
    'int bpf_map_update_batch(int fd, const uint8_t *keys, const uint8_t *values, _Inout_ uint32_t *count, void *opts)',
  ) as (fd: number, keys: Buffer, values: Buffer, count: number[], opts: null) => number,
  /** opts: a struct bpf_map_create_opts, or NULL. */
  mapCreate: f(
    'int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const uint8_t *opts)',
  ) as (type: number, name: string, keySize: number, valueSize: number, maxEntries: number, opts: Buffer | null) => number,
  /** sample: a koffi.register()ed ringSampleCallback. */
  ringBufferNew: f('ring_buffer *ring_buffer__new(int map_fd, void *sample_cb, void *ctx, void *opts)') as (
    mapFd: number,
    sample: unknown,
    context: null,
    opts: null,
  ) => RingBufferHandle | null,
  /** Calls the sample callback for each record there now, without waiting; the records handled, or -errno. */
  ringBufferConsume: f('int ring_buffer__consume(ring_buffer *rb)') as (ring: RingBufferHandle) => number,
  ringBufferFree: f('void ring_buffer__free(ring_buffer *rb)') as (ring: RingBufferHandle) => void,
  numPossibleCpus: f('int libbpf_num_possible_cpus(void)') as () => number,
  mapGetNextKey: f('int bpf_map_get_next_key(int fd, const uint8_t *key, _Out_ uint8_t *next_key)') as (
    fd: number,
    key: Buffer | null,
    next: Buffer,
  ) => number,
};

export type LibbpfLevel = 'warn' | 'info' | 'debug';
const LEVELS: LibbpfLevel[] = ['warn', 'info', 'debug'];

/**
 * Routes libbpf's messages (the verifier's log among them) to `sink`; the
 * callback stays registered for the life of the process, as libbpf keeps it.
 */
export function setLibbpfPrint(sink: (level: LibbpfLevel, message: string) => void): void {
  const buffer = Buffer.alloc(16384);
  const callback = koffi.register((level: number, format: string, args: unknown) => {
    const length = vsnprintf(buffer, buffer.length, format, args);
    sink(LEVELS[level] ?? 'debug', buffer.toString('utf8', 0, Math.max(0, Math.min(length, buffer.length - 1))).trimEnd());
    return 0;
  }, koffi.pointer(printCallback));
  libbpfSetPrint(callback);
}
