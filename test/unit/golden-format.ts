// The golden corpus's file format (test/golden/README.md): txtar, as Go's
// golang.org/x/tools/txtar and Cilium's script tests write it, read as a
// sequence of steps.

import { extname } from 'node:path';

/** A txtar archive: free text, then sections, each a `-- name --` line and the lines up to the next. */
export interface Archive {
  comment: string;
  sections: Section[];
}

export interface Section {
  name: string;
  body: string;
}

const MARKER = /^-- (.+) --$/;

export function parseArchive(text: string): Archive {
  const archive: Archive = { comment: '', sections: [] };
  let section: Section | undefined;
  // The text after the last newline is a line too (a file that does not end with one).
  const lines = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  for (const line of text === '' ? [] : lines) {
    const name = MARKER.exec(line)?.[1]?.trim();
    if (name !== undefined) {
      section = { name, body: '' };
      archive.sections.push(section);
    } else if (section) section.body += `${line}\n`;
    else archive.comment += `${line}\n`;
  }
  return archive;
}

/** The text of `archive`; for an archive parsed from a file ending with a newline, that file's text. */
export function formatArchive(archive: Archive): string {
  return archive.comment + archive.sections.map((section) => `-- ${section.name} --\n${section.body}`).join('');
}

/** A change of the input: a manifest file written (again, for a change), or deleted. */
export type Change = { kind: 'write'; file: string; text: string } | { kind: 'delete'; file: string };

/** What a case does, in order. */
export type Step =
  | Change
  /** Compare the dump with this section's body (its index in the archive, for regeneration). */
  | { kind: 'expect'; section: number; text: string };

export interface GoldenCase {
  archive: Archive;
  /** The agent's flags, as `socklb run` takes them (the `flags` section, split at white space). */
  flags: string[];
  steps: Step[];
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);
const DELETE = /^delete (\S+)$/;

/** Reads a case; throws naming the case and what is wrong with it. */
export function parseCase(name: string, text: string): GoldenCase {
  const archive = parseArchive(text);
  const fail = (reason: string): never => {
    throw new Error(`golden case ${name}: ${reason}`);
  };
  if (archive.comment.trim() === '') fail('starts with no comment: say which rule the case shows, and where the rule comes from');
  const flags: string[] = [];
  const steps: Step[] = [];
  const present = new Set<string>();
  archive.sections.forEach(({ name: sectionName, body }, index) => {
    const deleted = DELETE.exec(sectionName)?.[1];
    if (sectionName === 'flags') {
      if (index !== 0) fail('the flags section must come first: they hold for the whole case');
      flags.push(...body.split(/\s+/).filter((flag) => flag !== ''));
    } else if (sectionName === 'expected') steps.push({ kind: 'expect', section: index, text: body });
    else if (deleted !== undefined) {
      if (body.trim() !== '') fail(`section "${sectionName}" has a body: a deletion takes none`);
      if (!present.delete(deleted)) fail(`section "${sectionName}": ${deleted} is not there to delete`);
      steps.push({ kind: 'delete', file: deleted });
    } else if (MANIFEST_EXTENSIONS.has(extname(sectionName)) && !sectionName.includes('/')) {
      present.add(sectionName);
      steps.push({ kind: 'write', file: sectionName, text: body });
    } else fail(`section "${sectionName}" is none of flags, expected, delete FILE, or a manifest file (NAME.yaml, .yml, .json)`);
  });
  if (steps.at(-1)?.kind !== 'expect') fail('does not end with an expected section: what follows the last one is never checked');
  return { archive, flags, steps };
}

/** `golden` with each expected section's body replaced by what a run printed there, in order. */
export function withExpected(golden: GoldenCase, printed: readonly string[]): string {
  const sections = [...golden.archive.sections];
  golden.steps
    .filter((step) => step.kind === 'expect')
    .forEach((step, i) => {
      sections[step.section] = { name: 'expected', body: printed[i] ?? '' };
    });
  return formatArchive({ comment: golden.archive.comment, sections });
}
