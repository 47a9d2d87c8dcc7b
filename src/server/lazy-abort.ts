/**
 * An AbortController made only when its signal is read or it is aborted. Every async task
 * has one (for `cancel` and `currentCall().signal`), but most tasks never look at it: making
 * it up front cost a few percent of a server's time under load.
 */
export class LazyAbort {
  #ctl: AbortController | undefined;

  /** The signal (the controller is made now if it was not). */
  get signal(): AbortSignal {
    return (this.#ctl ??= new AbortController()).signal;
  }

  /** Abort: a signal read later is already aborted. */
  abort(): void {
    (this.#ctl ??= new AbortController()).abort();
  }
}
