import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Attestation, AttestationLookup } from '../policy/attestations.ts';
import { isSha256Hex } from '../rules.ts';
import { IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT_V1 } from '../trust/oms.ts';
import type { CatalogRejection } from './catalog.types.ts';

/** Attestations bigger than this are refused unread: a predicate is metadata, not a model. */
const MAX_ATTESTATION_BYTES = 4 * 1024 * 1024;
/** How deep `attestations/` is walked; a symlink loop or a hostile tree must end. */
const MAX_DEPTH = 8;

/** What an attestor's verifier says about one envelope (Sigstore bundle or plain DSSE). */
export interface VerifiedEnvelope {
  attestor: string;
  identity: string;
  payloadType: string;
  payload: Buffer;
}

/** Tries every configured attestor; throws when none verifies the envelope. */
export type EnvelopeVerifier = (bytes: Buffer, file: string) => Promise<VerifiedEnvelope>;

/** A file under attestations/ that was not used, and why. */
export type AttestationRejection = CatalogRejection & {
  reason: 'unreadable' | 'attestation_unverified' | 'attestation_invalid';
};

/**
 * Reads an in-toto Statement v1 and returns one attestation per release
 * digest its subjects name. The subject digest decides; the name is only
 * informational (README "Attestations").
 */
export function parseStatement(envelope: VerifiedEnvelope, file: string): Attestation[] {
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new Error(`expected payloadType ${IN_TOTO_PAYLOAD_TYPE}, got ${envelope.payloadType}`);
  }
  let statement: unknown;
  try {
    statement = JSON.parse(envelope.payload.toString('utf8'));
  } catch {
    throw new Error('the payload is not JSON');
  }
  if (statement === null || typeof statement !== 'object' || Array.isArray(statement)) {
    throw new Error('the payload is not an in-toto statement object');
  }
  const s = statement as Record<string, unknown>;
  if (s._type !== IN_TOTO_STATEMENT_V1)
    throw new Error(`expected _type ${IN_TOTO_STATEMENT_V1}, got ${String(s._type)}`);
  if (typeof s.predicateType !== 'string' || s.predicateType.length === 0)
    throw new Error('predicateType is missing');
  if (!Array.isArray(s.subject) || s.subject.length === 0) throw new Error('subject is missing or empty');
  const predicateType = s.predicateType;
  const digests = s.subject.flatMap((subject: unknown) => {
    const hex = (subject as { digest?: { sha256?: unknown } } | null)?.digest?.sha256;
    return typeof hex === 'string' && isSha256Hex(hex) ? [`sha256:${hex}`] : [];
  });
  if (digests.length === 0) throw new Error('no subject carries a sha256 digest');
  return [...new Set(digests)].map((release) => ({
    release,
    predicateType,
    statement: s,
    attestor: envelope.attestor,
    identity: envelope.identity,
    file,
  }));
}

/** Every `*.json` under `dir`, at any depth up to MAX_DEPTH, dotfiles skipped; sorted. */
export async function listAttestationFiles(dir: string, depth = 0): Promise<string[]> {
  if (depth > MAX_DEPTH) return [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    // A ConfigMap mount presents files as symlinks: follow them, but only to files or folders.
    const info = entry.isSymbolicLink() ? await stat(path).catch(() => undefined) : entry;
    if (info?.isDirectory()) files.push(...(await listAttestationFiles(path, depth + 1)));
    else if (info?.isFile() && entry.name.endsWith('.json')) files.push(path);
  }
  return files.sort();
}

/** The verified attestations of one scan, by release digest. */
export function indexAttestations(
  attestations: readonly Attestation[],
): AttestationLookup & { all: readonly Attestation[] } {
  const byRelease = new Map<string, Attestation[]>();
  for (const attestation of attestations) {
    const list = byRelease.get(attestation.release);
    if (list === undefined) byRelease.set(attestation.release, [attestation]);
    else list.push(attestation);
  }
  return { forRelease: (digest) => byRelease.get(digest) ?? [], all: attestations };
}

/**
 * Loads `<catalog>/attestations/`: each file is verified by the attestors
 * (`verify`) and parsed; files that fail are reported, never used.
 */
export async function loadAttestations(
  catalogDir: string,
  verify: EnvelopeVerifier,
): Promise<{ attestations: Attestation[]; rejected: AttestationRejection[] }> {
  const root = join(catalogDir, 'attestations');
  const attestations: Attestation[] = [];
  const rejected: AttestationRejection[] = [];
  for (const file of await listAttestationFiles(root)) {
    const name = relative(catalogDir, file);
    let bytes: Buffer;
    try {
      const info = await stat(file);
      if (info.size > MAX_ATTESTATION_BYTES)
        throw new Error(`expected at most ${MAX_ATTESTATION_BYTES} bytes, got ${info.size}`);
      bytes = await readFile(file);
    } catch (error) {
      rejected.push({ file: name, reason: 'unreadable', message: (error as Error).message });
      continue;
    }
    let envelope: VerifiedEnvelope;
    try {
      envelope = await verify(bytes, name);
    } catch (error) {
      rejected.push({ file: name, reason: 'attestation_unverified', message: (error as Error).message });
      continue;
    }
    try {
      attestations.push(...parseStatement(envelope, name));
    } catch (error) {
      rejected.push({ file: name, reason: 'attestation_invalid', message: (error as Error).message });
    }
  }
  return { attestations, rejected };
}
