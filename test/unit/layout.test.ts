// The TypeScript codecs against the BTF of the compiled object: sizes, field
// offsets and field sizes, and each map's key and value types.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { MAP_CODECS, MAP_NAMES, translationLayout, type StructLayout } from '../../src/datapath/layout.js';

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
}

const objectPath = fileURLToPath(new URL('../../bpf/socklb.bpf.o', import.meta.url));
const btf = new Map<number, BtfType>(
  (JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', objectPath], { encoding: 'utf8' })) as { types: BtfType[] }).types.map((type) => [type.id, type]),
);

function byId(id: number): BtfType {
  const type = btf.get(id);
  assert.ok(type, `BTF type ${id}`);
  return type;
}

function sizeOf(type: BtfType): number {
  if (type.kind === 'TYPEDEF' || type.kind === 'CONST' || type.kind === 'VOLATILE') return sizeOf(byId(type.type_id ?? 0));
  if (type.kind === 'ARRAY') return (type.nr_elems ?? 0) * sizeOf(byId(type.type_id ?? 0));
  return type.size ?? 0;
}

/** `struct name` for structs, the typedef's name for scalars, as the codecs write it. */
function cTypeName(type: BtfType): string {
  return type.kind === 'STRUCT' ? `struct ${type.name}` : type.name;
}

function structNamed(cType: string): BtfType {
  const found = [...btf.values()].find((type) => cTypeName(type) === cType);
  assert.ok(found, `${cType} is in the object's BTF`);
  return found;
}

const layouts: StructLayout[] = [
  ...Object.values(MAP_CODECS).flatMap((codecs) => [codecs.key, codecs.value]),
  translationLayout,
].filter((layout, index, all) => all.indexOf(layout) === index);

describe('map layouts match the BTF of bpf/socklb.bpf.o', () => {
  for (const layout of layouts) {
    it(`${layout.cType} has the size and fields of its codec`, () => {
      const type = structNamed(layout.cType);
      assert.equal(sizeOf(type), layout.size, 'size');
      const btfFields = Object.fromEntries(
        (type.members ?? []).map((member) => [member.name, { offset: member.bits_offset / 8, size: sizeOf(byId(member.type_id)) }]),
      );
      assert.deepEqual(btfFields, layout.fields);
    });
  }

  for (const [role, codecs] of Object.entries(MAP_CODECS)) {
    const mapName = MAP_NAMES[role as keyof typeof MAP_CODECS];
    it(`map ${mapName} has key ${codecs.key.cType} and value ${codecs.value.cType}`, () => {
      const variable = [...btf.values()].find((type) => type.kind === 'VAR' && type.name === mapName);
      assert.ok(variable, `map ${mapName} is declared`);
      const definition = byId(variable.type_id ?? 0);
      const pointee = (member: string) => {
        const field = definition.members?.find((m) => m.name === member);
        assert.ok(field, `${mapName} declares its ${member} type`);
        return cTypeName(byId(byId(field.type_id).type_id ?? 0));
      };
      assert.equal(pointee('key'), codecs.key.cType);
      assert.equal(pointee('value'), codecs.value.cType);
    });
  }
});
