// One run of an operation shared by the callers that want it at the same
// time: a caller never gets a run that began before its call, so what it
// sees (a read of the loop table) or what it waits for (a directory's fsync,
// DirectorySync) covers everything up to its request. Sixteen deletes in
// flight then cost two reads, not sixteen.
export class SharedRead<T> {
  private running: Promise<T> | undefined;
  private next: Promise<T> | undefined;

  constructor(private readonly read: () => Promise<T>) {}

  get(): Promise<T> {
    if (!this.running) {
      this.running = this.read().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    // The running read began before this call: wait it out, then share the one after it.
    this.next ??= this.running.then(
      () => this.after(),
      () => this.after(),
    );
    return this.next;
  }

  private after(): Promise<T> {
    this.next = undefined;
    return this.get();
  }
}
