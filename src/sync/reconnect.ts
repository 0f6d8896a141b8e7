/**
 * A link an edge keeps to its hub for as long as it runs: one session at a time, retried after a
 * failure with exponential backoff and full jitter (`backoff`), re-armed by a timer, never
 * by the next write. The KV link (edge.ts) and the blob link (blob-sync.ts) both run on it.
 */
const MIN_BACKOFF_MS = 200;
/** The longest wait between two tries: well below a minute, so an edge is back within one. */
const MAX_BACKOFF_MS = 15_000;

/** Waits before retry `attempt`: full jitter, so a fleet of edges does not come back in step. */
function backoff(attempt: number, onWake: (wake: () => void) => void): Promise<void> {
  const cap = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.min(attempt, 16));
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, Math.random() * cap);
    onWake(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export abstract class ReconnectingLink {
  /** The last failure, one line (never a key, a value or the token). */
  lastError = '';
  protected readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  /**
   * @param attemptAfterLink the backoff attempt after a link that had worked ended: 0 retries at
   * once, 1 waits the shortest backoff.
   */
  constructor(private readonly attemptAfterLink: 0 | 1) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.wake?.();
    await this.loop;
  }

  /** One connection until it fails; answers whether its handshake worked. */
  protected abstract session(): Promise<boolean>;

  /** A session ended (`linked`: after its handshake worked), before the wait to retry. */
  protected abstract ended(linked: boolean): void;

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopping.signal.aborted) {
      let linked = false;
      try {
        linked = await this.session();
      } catch (err) {
        this.lastError = (err as Error).message.split('\n')[0] ?? '';
      }
      this.ended(linked);
      attempt = linked ? this.attemptAfterLink : attempt + 1;
      if (this.stopping.signal.aborted) break;
      if (attempt === 0) continue;
      await backoff(attempt, (wake) => {
        this.wake = wake;
      });
    }
  }
}
