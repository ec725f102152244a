import { Readable } from 'stream';

/**
 * A download of `size` bytes that, when its connection breaks off (an error, or an end before the
 * last byte), asks `reopen` for the rest from the byte where it stopped, at most `resumes` times.
 * Destroying it (or aborting `signal`) destroys the connection in use at once, even a stalled one.
 */
export class ResumingStream extends Readable {
  private source: NodeJS.ReadableStream;
  private offset = 0;
  private attempts = 0;
  private readonly onData = (chunk: Buffer): void => {
    this.offset += chunk.length;
    if (!this.push(chunk)) this.source.pause();
  };
  private readonly onEnd = (): void => {
    if (this.offset === this.size) this.push(null);
    else this.broke(new Error(`${this.what}: the download ended after ${this.offset} of ${this.size} bytes`));
  };
  private readonly onError = (err: Error): void => this.broke(err);

  constructor(
    first: NodeJS.ReadableStream,
    private readonly size: number,
    private readonly reopen: (offset: number) => Promise<NodeJS.ReadableStream>,
    private readonly resumes: number,
    private readonly signal: AbortSignal,
    private readonly what: string,
  ) {
    super();
    this.source = first;
    this.attach(first);
    const abort = (): void => void this.destroy(signal.reason instanceof Error ? signal.reason : new Error('the download was aborted'));
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
    this.once('close', () => signal.removeEventListener('abort', abort));
  }

  private attach(source: NodeJS.ReadableStream): void {
    this.source = source;
    source.on('data', this.onData);
    source.on('end', this.onEnd);
    source.on('error', this.onError);
  }

  private detach(): void {
    this.source.removeListener('data', this.onData);
    this.source.removeListener('end', this.onEnd);
    this.source.removeListener('error', this.onError);
    // An error the old connection raises after this is nobody's business.
    this.source.on('error', () => undefined);
    (this.source as { destroy?: () => void }).destroy?.();
  }

  private broke(err: Error): void {
    this.detach();
    if (this.destroyed) return;
    if (this.signal.aborted || this.attempts >= this.resumes) {
      this.destroy(err);
      return;
    }
    this.attempts++;
    this.reopen(this.offset).then(
      (next) => {
        if (this.destroyed) (next as { destroy?: () => void }).destroy?.();
        else this.attach(next);
      },
      (failed: unknown) => this.destroy(failed instanceof Error ? failed : new Error(String(failed))),
    );
  }

  override _read(): void {
    this.source.resume();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.detach();
    done(err);
  }
}
