import { deepFreeze } from './access-token-rules.js';

/** How many header texts are kept: a zone signs with a few keys, each with one header per token type. */
const MAX_ENTRIES = 64;
/** Longer header texts are never kept (a zone's header is about 60 characters), so the cache stays small. */
const MAX_SEGMENT_LENGTH = 512;

/**
 * The decoded JOSE headers of tokens whose signature a zone key verified, by their exact base64url
 * text (issue 24). Every token a zone issues with one key carries the same header text, so decoding
 * it (base64url, UTF-8, JSON) is the same work on every request: a header text seen on a verified
 * token is decoded once. Only the decoding is skipped: the header rules still run on every token
 * (`checkHeader`), and a text that differs by one character (a respelling: M18, B25) is a miss and is
 * decoded and checked in full. Only texts of verified tokens enter (no one but a zone can fill it)
 * and it is bounded; the oldest text goes first.
 * @internal
 */
export class SignedHeaders {
  private readonly entries = new Map<string, Readonly<Record<string, unknown>>>();

  get size(): number {
    return this.entries.size;
  }

  /**
   * The text found last and its header: most tokens carry the same header as the one before (one
   * zone, one key), and comparing two texts costs less than the map's look-up, which hashes all of
   * each token's new header text (issue 24).
   */
  private last?: { readonly segment: string; readonly header: Readonly<Record<string, unknown>> };

  /** The header decoded from `segment` when a verified token carried that exact text, else undefined. */
  readonly lookup = (segment: string): Readonly<Record<string, unknown>> | undefined => {
    const { last } = this;
    if (last !== undefined && last.segment === segment) return last.header;
    const header = this.entries.get(segment);
    if (header !== undefined) this.last = { segment, header };
    return header;
  };

  /**
   * Keeps `header`, decoded from `segment`, after a signature over it verified. Frozen (nested
   * members too), as every later token with this text shares it.
   */
  remember(segment: string, header: Readonly<Record<string, unknown>>): void {
    if (segment.length > MAX_SEGMENT_LENGTH || this.entries.has(segment)) return;
    if (this.entries.size >= MAX_ENTRIES) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
      if (this.last?.segment === oldest) this.last = undefined;
    }
    this.entries.set(segment, deepFreeze(header));
  }
}
