import * as crypto from 'crypto';
import { Transform, type TransformCallback } from 'stream';
import { algorithmOf } from '../oci/layout';
import type { BlobRef } from '../store/types';
import type { ByteRange } from './protocol';

/** A blob whose bytes are not the ones its digest and size promise. */
export class DigestMismatchError extends Error {
  override name = 'DigestMismatchError';
}

/** A store call or a stream that made no progress for too long. */
export class StalledError extends Error {
  override name = 'StalledError';
}

/**
 * Passes a blob's bytes through while hashing them, and never lets the last of them out before the
 * whole blob has matched its digest and size: the most recent piece is held back until the next
 * one arrives, and the final piece is released only at the end, after the check. A blob that does
 * not match ends in an error instead, so whoever reads the stream never sees it complete: an HTTP
 * response is cut short (Content-Length unmet), a store's upload fails before it counts.
 *
 * With a `range`, only those bytes are passed on, but every byte of the blob is still hashed, and
 * the last piece of the range is still held back until the whole blob has matched.
 */
export class BlobVerifier extends Transform {
  private readonly hash: crypto.Hash;
  private seen = 0;
  private held: Buffer | undefined;
  private readonly first: number;
  private readonly last: number;

  private readonly onProgress: ((bytes: number) => void) | undefined;
  private readonly onVerified: (() => void) | undefined;

  /**
   * `onProgress` hears of every chunk that comes in; `onVerified` is called once the whole blob
   * has matched, before its last piece goes out.
   */
  constructor(
    private readonly ref: BlobRef,
    options: { readonly range?: ByteRange; readonly onProgress?: (bytes: number) => void; readonly onVerified?: () => void } = {},
  ) {
    super();
    this.hash = crypto.createHash(algorithmOf(ref.digest));
    this.first = options.range?.start ?? 0;
    this.last = options.range?.end ?? ref.size - 1;
    this.onProgress = options.onProgress;
    this.onVerified = options.onVerified;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const offset = this.seen;
    this.seen += chunk.length;
    if (this.seen > this.ref.size) {
      done(new DigestMismatchError(`${this.ref.digest} has more than its ${this.ref.size} bytes`));
      return;
    }
    this.hash.update(chunk);
    this.onProgress?.(chunk.length);
    const from = Math.max(this.first - offset, 0);
    const to = Math.min(this.last + 1 - offset, chunk.length);
    if (to > from) {
      if (this.held !== undefined) this.push(this.held);
      this.held = from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to);
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    const digest = `${algorithmOf(this.ref.digest)}:${this.hash.digest('hex')}`;
    if (this.seen !== this.ref.size || digest !== this.ref.digest) {
      done(
        new DigestMismatchError(
          `${this.ref.digest} does not match: ${this.seen} bytes with digest ${digest}, expected ${this.ref.size} bytes`,
        ),
      );
      return;
    }
    this.onVerified?.();
    if (this.held !== undefined) this.push(this.held);
    this.held = undefined;
    done();
  }
}

/**
 * Aborts its signal when it has not been kicked for `ms`: a stream or a store call that stalls ends
 * in a StalledError instead of a hang. It follows `parent` too (the client went away, the facade closed).
 */
export class Watchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly unfollow: () => void;

  constructor(
    private readonly ms: number,
    private readonly what: string,
    parent?: AbortSignal,
  ) {
    const onParent = (): void => this.controller.abort(parent?.reason);
    if (parent?.aborted === true) onParent();
    parent?.addEventListener('abort', onParent, { once: true });
    this.unfollow = () => parent?.removeEventListener('abort', onParent);
    this.kick();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  kick(): void {
    if (this.controller.signal.aborted) return;
    // Kicked for every chunk of a blob: the timer is re-armed, not made anew (a stopped one stays stopped).
    if (this.timer !== undefined) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(
      () => this.controller.abort(new StalledError(`${this.what} made no progress for ${Math.round(this.ms / 1000)} s`)),
      this.ms,
    );
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.unfollow();
  }

  /**
   * The promise, or the signal's reason as soon as it aborts: a store call that ignores its signal
   * cannot hold a request forever. What the call yields after it lost goes to `dispose` (a stream
   * opened too late is destroyed: nobody reads it, and its connection's errors would be nobody's).
   */
  async guard<T>(promise: Promise<T>, dispose?: (late: T) => void): Promise<T> {
    // The losing promise may still settle later; its rejection is of no interest then.
    promise.catch(() => undefined);
    const signal = this.controller.signal;
    let onAbort: (() => void) | undefined;
    try {
      if (signal.aborted) throw toError(signal.reason);
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(toError(signal.reason));
        signal.addEventListener('abort', onAbort, { once: true });
      });
      return await Promise.race([promise, aborted]);
    } catch (err) {
      // Lost to the signal, or failed: a value it yields (now or later) reaches nobody but `dispose`.
      if (dispose !== undefined) promise.then(dispose, () => undefined).catch(() => undefined);
      throw err;
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    }
  }
}

export function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
