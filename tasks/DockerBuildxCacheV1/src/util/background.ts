type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/**
 * Work started now whose result is asked for later, or never: a failure waits for whoever asks for
 * the result instead of becoming an unhandled rejection, and `done` waits for the work either way.
 */
export class Background<T> {
  private readonly outcome: Promise<Outcome<T>>;

  constructor(work: Promise<T>) {
    this.outcome = work.then(
      (value): Outcome<T> => ({ ok: true, value }),
      (error: unknown): Outcome<T> => ({ ok: false, error }),
    );
  }

  /** The work's value; its failure, thrown. */
  async result(): Promise<T> {
    const outcome = await this.outcome;
    if (outcome.ok) return outcome.value;
    throw outcome.error;
  }

  /** Waits for the work to end, well or not. */
  async done(): Promise<void> {
    await this.outcome;
  }
}
