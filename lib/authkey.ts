/**
 * The cluster key of peer authentication (LowcommsOptions.auth). The handshake's MACs
 * travel in clear, so whoever records one can test guesses of the key offline: the key
 * must be random (32 bytes), or a passphrase must be stretched (scrypt, with a salt) so
 * that each guess costs the attacker what it costs us once per process.
 */
import { scrypt, type ScryptOptions } from 'node:crypto';
import { OPTION_DEFAULTS } from './defaults';
import { ConfigError } from './errors';

/** The least key length: 256 random bits. */
export const AUTH_KEY_BYTES = 32;
/** scrypt cost of a passphrase (RFC 7914 names): 128 * N * r bytes of memory (128 MiB). */
export const AUTH_SCRYPT = { N: 2 ** 17, r: 8, p: 1 } as const;
/** Prefixed to the salt, so that the same passphrase and salt used elsewhere give another key. */
const SCRYPT_LABEL = 'lowcomms-auth-v1:';
const MIN_SALT_BYTES = 16;
const MIN_PASSPHRASE_BYTES = 8;

/**
 * Either 32 or more random bytes (`lowcomms keygen FILE`, or `openssl rand -out FILE 32`,
 * then `{ key: fs.readFileSync(FILE) }`), or a passphrase stretched with scrypt and a
 * salt of at least 16 bytes that every node of the cluster uses (a cluster name is fine:
 * it need not be secret, only the same everywhere and not used by other clusters).
 */
export type AuthOptions = (
  | { key: Uint8Array; passphrase?: never; salt?: never }
  | { passphrase: string; salt: string | Uint8Array; key?: never }
) & {
  /**
   * How every message after the handshake is protected, with keys of this connection
   * alone (HKDF-SHA256 from the cluster key, both nodeids, incarnations and nonces; one
   * per direction): 'encrypt' (default), AES-256-GCM, so that nothing on the wire can be
   * read, altered, injected, replayed, reordered or dropped unnoticed; 'integrity', the
   * same authentication (GMAC) with the messages in clear, for private networks that
   * want throughput more than secrecy (it costs less CPU per byte: docs/performance.md).
   * Every node must use the same.
   */
  records?: RecordProtection;
};

/** AuthOptions.records. */
export type RecordProtection = 'encrypt' | 'integrity';

const HOW =
  'make a key with `lowcomms keygen FILE` (or `openssl rand -out FILE 32`) and pass { key: fs.readFileSync(FILE) }, ' +
  'or stretch a passphrase with { passphrase, salt }';

function scryptAsync(passphrase: Buffer, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(passphrase, salt, AUTH_KEY_BYTES, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/**
 * The 32-byte key a passphrase and salt stand for: scrypt(passphrase, "lowcomms-auth-v1:"
 * + salt, N = 2^17, r = 8, p = 1). Takes about half a second (measured 0.47-0.52 s) and 128 MiB, off the main
 * thread; derive once and pass { key } when a process runs many instances.
 */
export function deriveAuthKey(passphrase: string, salt: string | Uint8Array): Promise<Buffer> {
  const { pass, saltBytes } = checkPassphrase(passphrase, salt);
  return scryptAsync(pass, saltBytes, { ...AUTH_SCRYPT, maxmem: 256 << 20 });
}

function checkPassphrase(passphrase: unknown, salt: unknown): { pass: Buffer; saltBytes: Buffer } {
  if (typeof passphrase !== 'string' || Buffer.byteLength(passphrase) < MIN_PASSPHRASE_BYTES)
    throw new ConfigError(`auth.passphrase must be a string of at least ${MIN_PASSPHRASE_BYTES} bytes`);
  if (typeof salt !== 'string' && !(salt instanceof Uint8Array))
    throw new ConfigError('auth.salt must be a string or bytes, the same on every node of the cluster');
  const s = Buffer.from(salt);
  if (s.length < MIN_SALT_BYTES) throw new ConfigError(`auth.salt must be at least ${MIN_SALT_BYTES} bytes, got ${s.length}`);
  return { pass: Buffer.from(passphrase), saltBytes: Buffer.concat([Buffer.from(SCRYPT_LABEL), s]) };
}

/** A checked LowcommsOptions.auth: the key's bytes, or the passphrase to stretch once. */
export class ClusterKey {
  private derived: Promise<Buffer> | undefined;

  private constructor(
    /** The key's bytes when given as bytes (undefined for a passphrase until bytes()). */
    readonly key: Buffer | undefined,
    private readonly passphrase: { pass: Buffer; saltBytes: Buffer } | undefined,
    /** How records are protected after the handshake. */
    readonly records: RecordProtection,
  ) {}

  /** Checks the option at construction time; ConfigError for anything but a strong key or a passphrase + salt. */
  static from(auth: unknown): ClusterKey {
    if (!auth || typeof auth !== 'object') throw new ConfigError(`auth must be { key } or { passphrase, salt }; ${HOW}`);
    const a = auth as { key?: unknown; passphrase?: unknown; salt?: unknown; records?: unknown };
    const records = a.records ?? OPTION_DEFAULTS.records;
    if (records !== 'encrypt' && records !== 'integrity')
      throw new ConfigError(`auth.records must be 'encrypt' or 'integrity', got ${String(a.records)}`);
    if (a.key !== undefined && (a.passphrase !== undefined || a.salt !== undefined))
      throw new ConfigError('auth: give either key or passphrase + salt, not both');
    if (a.key === undefined) {
      if (a.passphrase === undefined) throw new ConfigError(`auth.key is required; ${HOW}`);
      return new ClusterKey(undefined, checkPassphrase(a.passphrase, a.salt), records);
    }
    if (typeof a.key === 'string')
      throw new ConfigError(
        'auth.key must be random bytes (a Buffer or Uint8Array), not a string: a passphrase used as the key falls to an ' +
          `offline dictionary attack on a recorded handshake; ${HOW}`,
      );
    if (!(a.key instanceof Uint8Array)) throw new ConfigError(`auth.key must be a Buffer or Uint8Array; ${HOW}`);
    if (a.key.length < AUTH_KEY_BYTES)
      throw new ConfigError(`auth.key must be at least ${AUTH_KEY_BYTES} random bytes, got ${a.key.length}; ${HOW}`);
    const key = Buffer.from(a.key); // a copy: the caller's buffer may change later
    if (key.every((b) => b === key[0])) throw new ConfigError(`auth.key is ${key.length} equal bytes, not a random key; ${HOW}`);
    return new ClusterKey(key, undefined, records);
  }

  /** The key's bytes; a passphrase is stretched on the first call (asynchronously). */
  bytes(): Promise<Buffer> {
    if (this.key) return Promise.resolve(this.key);
    const p = this.passphrase!;
    this.derived ??= scryptAsync(p.pass, p.saltBytes, { ...AUTH_SCRYPT, maxmem: 256 << 20 });
    return this.derived;
  }
}
