/** Where a {@link KeptAnswer} gets its answer, how long it keeps one, and what time it is. */
export interface AnswerSource<T> {
  /** Asks for a fresh answer. Should not reject: a failure is an answer too, so it can be kept. */
  ask(): Promise<T>;
  /** Milliseconds to keep `answer` (`0`: ask again on the next call). */
  keepMs(answer: T): number;
  /** The clock, in milliseconds. */
  now(): number;
}

/**
 * One answer shared by every caller: callers that arrive while it is being asked wait for that one
 * round trip (single flight), and callers inside the answer's window get it without asking.
 */
export class KeptAnswer<T> {
  private kept?: { answer: T; at: number; forMs: number };
  private asking?: Promise<T>;

  constructor(private readonly source: AnswerSource<T>) {}

  get(): Promise<T> {
    if (this.kept) {
      const age = this.source.now() - this.kept.at;
      // A clock that went back (age < 0) does not stretch the window.
      if (age >= 0 && age < this.kept.forMs) return Promise.resolve(this.kept.answer);
    }
    this.asking ??= this.source.ask().then(
      (answer) => {
        this.kept = { answer, at: this.source.now(), forMs: this.source.keepMs(answer) };
        return answer;
      },
    ).finally(() => {
      this.asking = undefined;
    });
    return this.asking;
  }
}
