/**
 * Bounded waits: `withTimeout(promise, ms)` never rejects and never cancels the work (JavaScript
 * cannot cancel a promise); it says whether the promise settled in time. Port of Python's
 * `endcall.agent.waits`.
 */

export type Settled<T> =
  | { done: true; ok: true; value: T }
  | { done: true; ok: false; error: unknown }
  | { done: false };

/** Wait for `promise` at most `ms` (null: no bound). Never rejects. */
export async function withTimeout<T>(promise: PromiseLike<T>, ms: number | null): Promise<Settled<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const work = Promise.resolve(promise).then(
    (value): Settled<T> => ({ done: true, ok: true, value }),
    (error: unknown): Settled<T> => ({ done: true, ok: false, error }),
  );
  if (ms === null) return work;
  const timeout = new Promise<Settled<T>>((resolve) => {
    timer = setTimeout(() => resolve({ done: false }), Math.max(0, ms));
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What is left of `defaultMs` before `deadline` (epoch ms; null: no deadline). */
export function remaining(deadline: number | null, defaultMs: number): number {
  if (deadline === null) return defaultMs;
  return Math.max(0, Math.min(defaultMs, deadline - Date.now()));
}

/** A promise with its resolve function (`Promise.withResolvers` is Node 22+). */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** A one-shot flag that can be awaited (Python's `asyncio.Event`, set once). */
export class Flag {
  private readonly d = deferred<void>();
  private value = false;
  get isSet(): boolean {
    return this.value;
  }
  set(): void {
    if (!this.value) {
      this.value = true;
      this.d.resolve();
    }
  }
  wait(): Promise<void> {
    return this.d.promise;
  }
}
