/**
 * In-process wake-ups for agent tasks. The tasks themselves live in the metadata store
 * (so any `roset serve` on the database can deliver them and read their results); this
 * only shortens the wait when the producer and the consumer share a process.
 *
 * Invariant: a wake-up is a hint, never the truth. Every waiter re-reads the store when
 * woken, and also after its poll interval, so a task added or finished by another
 * process on the same database is seen within that interval.
 */
import { EventEmitter } from 'node:events';

export class TaskBus {
  private readonly events = new EventEmitter();

  constructor() {
    // One listener per waiting poll or task: many agents and commits at once is normal.
    this.events.setMaxListeners(0);
  }

  /** A task was added for `agentId`. */
  taskAdded(agentId: string): void {
    this.events.emit(`agent:${agentId}`);
  }

  /** Something `agentId` should hear of at once (its mount's auto-commit rules changed): its waiting poll answers now. */
  wakeAgent(agentId: string): void {
    this.events.emit(`agent:${agentId}`);
  }

  /** Task `taskId` was answered. */
  taskFinished(taskId: string): void {
    this.events.emit(`task:${taskId}`);
  }

  /** An agent reported progress on task `taskId`: its waiter reads it sooner. */
  taskProgress(taskId: string): void {
    this.events.emit(`task:${taskId}`);
  }

  /** Resolves when a task is added for `agentId`, or after `ms`, or when `signal` aborts. */
  waitForAgent(agentId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return this.wait(`agent:${agentId}`, ms, signal);
  }

  /** Resolves when `taskId` is answered or reports progress, or after `ms`. */
  waitForTask(taskId: string, ms: number): Promise<void> {
    return this.wait(`task:${taskId}`, ms);
  }

  private wait(event: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.events.off(event, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.events.once(event, done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
