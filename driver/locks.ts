// Per-volume exclusion. The spec's answer to a second operation on a volume
// that already has one in flight is ABORTED (the caller retries); different
// keys never wait on each other.
export class KeyedLocks {
  private readonly held = new Set<string>();

  /** Takes the lock or returns false when another operation holds it. */
  tryAcquire(key: string): boolean {
    if (this.held.has(key)) return false;
    this.held.add(key);
    return true;
  }

  release(key: string): void {
    this.held.delete(key);
  }
}
