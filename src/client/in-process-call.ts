/**
 * The two ends of one in-process call: what the transitive client returns (ClientCall) and what the
 * gRPC handlers are given (ServerCall). No Node streams in between: a request is handed to the
 * handler's 'data' listener as it is written, and answers reach the consumer in one batch per
 * microtask. Backpressure works as over the network: write() answers false once HIGH_WATER
 * messages wait on the other side, and 'drain' follows when they have been taken.
 */

import { EventEmitter } from 'node:events';
import { Metadata, type ServiceError, status as Status, type StatusObject } from '@grpc/grpc-js';
import { Queue } from '../queue.js';

/** Messages waiting on one side before write() answers false (an object-mode stream's default). */
export const HIGH_WATER = 16;
/**
 * While the consumer reads ('data' listener, not paused), answers are handed over every microtask,
 * so more may wait: this only bounds what one turn of the handler may queue.
 */
const FLOWING_HIGH_WATER = 1024;

export function serviceError(err: Partial<ServiceError>): ServiceError {
  const code = err.code ?? Status.UNKNOWN;
  const details = err.details ?? err.message ?? '';
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), {
    code,
    details,
    metadata: err.metadata ?? new Metadata(),
  });
}

type Listener = (...args: unknown[]) => void;

/**
 * emit('data', message) without emit()'s argument array per call: the listeners as emit() would
 * call them (rawListeners: once() wrappers included), looked up again after any is added or removed.
 */
class DataEvent {
  private listeners: Listener[] | undefined;

  constructor(private readonly emitter: EventEmitter) {
    const changed = (event: string | symbol): void => {
      if (event === 'data') this.listeners = undefined;
    };
    emitter.on('newListener', changed);
    emitter.on('removeListener', changed);
  }

  emit(message: unknown): void {
    this.listeners ??= this.emitter.rawListeners('data') as Listener[];
    // Like emit(): the listeners as they were when the message was emitted.
    const listeners = this.listeners;
    for (let i = 0; i < listeners.length; i++) listeners[i]!.call(this.emitter, message);
  }
}

const OK_STATUS: StatusObject = { code: Status.OK, details: 'OK', metadata: new Metadata() };

/** The client's end: 'data' / 'end' / 'error' / 'status' / 'close' events, write / end / cancel. */
export class ClientCall extends EventEmitter {
  readonly server: ServerCall;
  /** Answers not yet handed to the consumer. */
  private readonly outbox = new Queue<unknown>();
  private readonly data = new DataEvent(this);
  /** 'end', or the error that ends the call, once the server has finished. */
  private terminal: 'end' | ServiceError | undefined;
  /** null: no 'data' listener yet (answers wait); false: paused; true: flowing. */
  private flowingState: boolean | null = null;
  private scheduled = false;
  private ended = false;
  /** The call is over for the client (status delivered or cancelled). */
  finished = false;
  /** write() answered false: emit 'drain' once the server has taken the waiting requests. */
  needDrain = false;
  /** For client-streaming calls: the answer goes here instead of to 'data' / 'error'. */
  private readonly callback: ((err: ServiceError | null, value?: unknown) => void) | undefined;

  constructor(callback?: (err: ServiceError | null, value?: unknown) => void) {
    super();
    this.callback = callback;
    this.server = new ServerCall(this);
    this.on('newListener', (event: string) => {
      if (event === 'data' && this.flowingState === null) {
        this.flowingState = true;
        this.schedule();
      }
    });
  }

  get destroyed(): boolean {
    return this.finished;
  }

  getPeer(): string {
    return 'in-process';
  }

  /** write(message[, flags][, callback]), as on a grpc-js call. */
  write(message: unknown, flagsOrCallback?: unknown, callback?: unknown): boolean {
    if (this.ended) throw new Error('write after end');
    let ok = false;
    if (!this.finished) {
      ok = this.server.receive(message);
      if (!ok) this.needDrain = true;
    }
    const cb = typeof flagsOrCallback === 'function' ? flagsOrCallback : callback;
    if (typeof cb === 'function') queueMicrotask(cb as () => void);
    return ok;
  }

  end(...args: unknown[]): this {
    const cb = args[args.length - 1];
    if (args.length > 0 && typeof args[0] !== 'function') this.write(args[0]);
    if (!this.ended) {
      this.ended = true;
      if (!this.finished) this.server.receiveEnd();
    }
    if (typeof cb === 'function') queueMicrotask(cb as () => void);
    return this;
  }

  cancel(): void {
    if (this.finished || this.terminal !== undefined) return;
    this.outbox.clear();
    this.server.cancel();
    this.finish(serviceError({ code: Status.CANCELLED, details: 'Cancelled on client' }));
  }

  pause(): this {
    this.flowingState = false;
    return this;
  }

  resume(): this {
    this.flowingState = true;
    this.schedule();
    return this;
  }

  isPaused(): boolean {
    return this.flowingState === false;
  }

  /** `for await (const answer of call)`, as on a grpc-js call; leaving the loop early cancels the call. */
  async *[Symbol.asyncIterator](): AsyncGenerator<unknown, void, undefined> {
    const queue = new Queue<unknown>();
    let failure: ServiceError | undefined;
    let done = false;
    let wake: (() => void) | undefined;
    const onData = (answer: unknown): void => {
      queue.push(answer);
      if (queue.size >= HIGH_WATER) this.pause();
      wake?.();
    };
    const onEnd = (): void => {
      done = true;
      wake?.();
    };
    const onError = (err: ServiceError): void => {
      failure = err;
      done = true;
      wake?.();
    };
    this.on('data', onData);
    this.on('end', onEnd);
    this.on('error', onError);
    try {
      for (;;) {
        if (queue.size > 0) {
          yield queue.shift();
          if (queue.size === 0 && this.isPaused()) this.resume();
        } else if (failure) {
          throw failure;
        } else if (done) {
          return;
        } else {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      }
    } finally {
      this.off('data', onData);
      this.off('end', onEnd);
      this.off('error', onError);
      if (!done) this.abandon();
    }
  }

  /** The consumer left: the server sees a cancelled call; no error is raised here. */
  private abandon(): void {
    if (this.finished) return;
    this.finished = true;
    this.outbox.clear();
    this.server.cancel();
    queueMicrotask(() => this.emit('close'));
  }

  /** From the server: one answer. False: stop writing until the server call's 'drain'. */
  deliver(message: unknown): boolean {
    this.outbox.push(message);
    this.schedule();
    return this.outbox.size < (this.flowingState === true ? FLOWING_HIGH_WATER : HIGH_WATER);
  }

  /** From the server: the call is over ('end'), or failed; told after the answers before it. */
  finish(terminal: 'end' | ServiceError): void {
    if (this.finished || this.terminal !== undefined) return;
    this.terminal = terminal;
    if (this.callback && terminal !== 'end') this.answer(terminal);
    else this.schedule();
  }

  /** Client-streaming calls: the single answer (or error) goes to the callback, once. */
  answer(err: ServiceError | null, value?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.server.finished = true;
    queueMicrotask(() => {
      this.callback!(err, value);
      this.emit('status', err ? { code: err.code, details: err.details, metadata: err.metadata } : OK_STATUS);
    });
  }

  private schedule(): void {
    if (this.scheduled || this.finished) return;
    this.scheduled = true;
    queueMicrotask(this.flush);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    while (this.flowingState === true && this.outbox.size > 0 && !this.finished) {
      this.data.emit(this.outbox.shift());
    }
    const server = this.server;
    if (server.needDrain && this.outbox.size < HIGH_WATER && !server.finished) {
      server.needDrain = false;
      server.emit('drain');
    }
    const terminal = this.terminal;
    // 'end' after every answer; an error even to a consumer that is not reading.
    if (terminal === undefined || this.finished || (terminal === 'end' && this.outbox.size > 0)) return;
    this.finished = true;
    if (terminal === 'end') {
      this.emit('end');
      this.emit('status', OK_STATUS);
    } else {
      this.emit('error', terminal);
      this.emit('status', { code: terminal.code, details: terminal.details, metadata: terminal.metadata });
    }
    this.emit('close');
  };
}

/**
 * The server's end, shaped as the handlers use a grpc-js server call: 'data' / 'end' /
 * 'cancelled' / 'drain' / 'close' events, write / end / pause / resume, and emit('error', status)
 * to fail the call.
 */
export class ServerCall extends EventEmitter {
  readonly metadata = new Metadata();
  cancelled = false;
  /** The server has ended or failed the call: its later writes are dropped. */
  finished = false;
  /** write() answered false: 'drain' follows once the consumer has taken the answers. */
  needDrain = false;
  /** Requests the handler has not taken yet (it paused). */
  private readonly inbox = new Queue<unknown>();
  private readonly data = new DataEvent(this);
  private paused = false;
  private endPending = false;
  private drainScheduled = false;
  /** write() callbacks, called together in one microtask (not one microtask per answer). */
  private writtenQueue: (() => void)[] = [];
  /**
   * Sees each request just before the 'data' listeners (the server's ReadGate counts it here):
   * one 'data' listener instead of two, so emit() copies no listener array per request.
   */
  arrival: ((message: unknown) => void) | undefined = undefined;

  constructor(private readonly client: ClientCall) {
    super();
    // Registered first, so the handler's own 'error' listeners see a call already finished.
    this.on('error', (err: Partial<ServiceError>) => {
      if (this.finished || this.cancelled) return;
      this.finished = true;
      this.client.finish(serviceError(err));
      this.emit('close');
    });
  }

  getPeer(): string {
    return 'in-process';
  }

  /** `written` is called once the answer is handed over (as grpc-js calls it once it is sent). */
  write(message: unknown, written?: () => void): boolean {
    if (this.finished || this.cancelled) {
      if (written) this.afterWrite(written);
      return false;
    }
    const ok = this.client.deliver(message);
    if (!ok) this.needDrain = true;
    if (written) this.afterWrite(written);
    return ok;
  }

  /** Calls `written` in a microtask shared by every answer written before it runs, in order. */
  private afterWrite(written: () => void): void {
    if (this.writtenQueue.push(written) === 1) queueMicrotask(this.runWritten);
  }

  private readonly runWritten = (): void => {
    const queue = this.writtenQueue;
    this.writtenQueue = [];
    for (const written of queue) written();
  };

  end(): void {
    if (this.finished || this.cancelled) return;
    this.finished = true;
    this.client.finish('end');
    this.emit('close');
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    this.paused = false;
    if ((this.inbox.size > 0 || this.endPending) && !this.drainScheduled) {
      // Later, not inside the handler's own call to resume().
      this.drainScheduled = true;
      queueMicrotask(this.drainInbox);
    }
    return this;
  }

  isPaused(): boolean {
    return this.paused;
  }

  /** From the client: one request, handed to the handler now unless it paused. */
  receive(message: unknown): boolean {
    if (this.cancelled) return false;
    if (this.paused || this.inbox.size > 0) {
      this.inbox.push(message);
      return this.inbox.size < HIGH_WATER;
    }
    this.hand(message);
    return true;
  }

  /** From the client: no more requests. */
  receiveEnd(): void {
    if (this.paused || this.inbox.size > 0) this.endPending = true;
    else if (!this.cancelled) this.emit('end');
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.inbox.clear();
    this.emit('cancelled');
    this.emit('close');
  }

  /** A request to the handler: `arrival` first, then the 'data' listeners. */
  private hand(message: unknown): void {
    this.arrival?.(message);
    this.data.emit(message);
  }

  private readonly drainInbox = (): void => {
    this.drainScheduled = false;
    while (!this.paused && this.inbox.size > 0 && !this.cancelled) this.hand(this.inbox.shift());
    if (this.inbox.size === 0 && this.endPending && !this.paused && !this.cancelled) {
      this.endPending = false;
      this.emit('end');
    }
    const client = this.client;
    if (client.needDrain && this.inbox.size < HIGH_WATER && !client.finished) {
      client.needDrain = false;
      client.emit('drain');
    }
  };
}
