import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * One AES-256 key with its id, e.g. `{ id: '2026-11', key: process.env.EXCHANGE_CACHE_KEY }`.
 * @publicApi
 */
export interface TokenCipherKey {
  /** Short name stored with each entry so a rotated key still opens older entries: 1–32 of `A–Z a–z 0–9 _ -`. */
  id: string;
  /** 32 bytes: a `Buffer`/`Uint8Array`, or their base64 / base64url text. */
  key: Uint8Array | string;
}

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * AES-256-GCM sealing of cache entries (NIST SP 800-38D), with a key ring for rotation: entries are
 * sealed with the first key and opened with whichever key their id names. The additional data binds
 * an entry to its key, so an entry copied under another key does not open.
 *
 * Sealed form: `<key id>.<iv>.<ciphertext>.<tag>`, the last three base64url.
 */
export class TokenCipher {
  private readonly keys: ReadonlyMap<string, Buffer>;
  private readonly current: string;

  /** @throws TypeError when the key list is empty, an id is invalid or repeated, or a key is not 32 bytes. */
  constructor(keys: readonly TokenCipherKey[]) {
    if (!Array.isArray(keys) || keys.length === 0) throw new TypeError("TokenCipher: 'keys' must list at least one key (the first one encrypts)");
    const ring = new Map<string, Buffer>();
    for (const { id, key } of keys) {
      if (typeof id !== 'string' || !KEY_ID.test(id)) throw new TypeError(`TokenCipher: key id ${JSON.stringify(id)} must be 1–32 of A–Z a–z 0–9 _ -`);
      if (ring.has(id)) throw new TypeError(`TokenCipher: key id ${JSON.stringify(id)} is listed twice`);
      const bytes = typeof key === 'string' ? Buffer.from(key, 'base64') : Buffer.from(key ?? []);
      if (bytes.length !== 32) throw new TypeError(`TokenCipher: key ${JSON.stringify(id)} must be 32 bytes (AES-256)`);
      ring.set(id, bytes);
    }
    this.keys = ring;
    this.current = keys[0].id;
  }

  seal(plaintext: string, associatedData: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.current)!, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [this.current, iv.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  /** The plaintext, or undefined when the entry is malformed, sealed with an unknown key or altered. */
  open(sealed: string, associatedData: string): string | undefined {
    const [id, iv, ciphertext, tag, extra] = sealed.split('.');
    const key = id === undefined ? undefined : this.keys.get(id);
    if (!key || iv === undefined || ciphertext === undefined || tag === undefined || extra !== undefined) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
