import * as crypto from 'crypto';
import { Transform, type TransformCallback } from 'stream';
import { algorithmOf } from '../oci/layout';
import type { BlobRef } from './types';

/** Bytes that are not the blob they were meant to be. */
export class BlobMismatchError extends Error {
  override name = 'BlobMismatchError';
}

/**
 * A pass-through that hashes and counts the bytes of one blob. Strict, it fails instead of ending
 * when the bytes are not the blob (too many, too few, another digest), so that whatever reads it to
 * the end stores nothing wrong; lenient, it passes everything and tells `ended` whether they were.
 */
export class DigestStream extends Transform {
  /** Bytes passed so far. */
  size = 0;
  /** Whether the bytes were the blob, once they all passed. */
  intact?: boolean;
  private readonly hash: crypto.Hash;

  constructor(
    private readonly ref: BlobRef,
    private readonly strict: boolean,
    private readonly ended?: (intact: boolean) => void,
  ) {
    super();
    this.hash = crypto.createHash(algorithmOf(ref.digest));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.size += chunk.length;
    if (this.strict && this.size > this.ref.size) {
      done(new BlobMismatchError(`${this.ref.digest}: more than its ${this.ref.size} bytes`));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const digest = `${algorithmOf(this.ref.digest)}:${this.hash.digest('hex')}`;
    const intact = this.size === this.ref.size && digest === this.ref.digest;
    this.intact = intact;
    this.ended?.(intact);
    if (this.strict && !intact) done(new BlobMismatchError(`${this.ref.digest}: read ${this.size} bytes, ${digest}`));
    else done();
  }
}
