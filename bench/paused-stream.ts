/**
 * How much a grpc-js server stream takes in while its handler is not reading (issue #12).
 *
 *   node --import tsx bench/paused-stream.ts
 *
 * A bare grpc-js server whose bidi handler takes one message, then stops reading, either with
 * `call.pause()` or with buffdb's ReadGate (the budget has no room left). The client writes 100
 * messages as fast as it may; once nothing moves any more, the script prints what the server
 * holds: messages delivered, messages buffered in the call's Readable, bytes in the HTTP/2
 * stream's buffer and the stream's remaining receive window.
 */
import {
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { MemoryBudget } from '../src/server/memory-budget.js';
import { ReadGate } from '../src/server/read-gate.js';

const identity = (b: Buffer): Buffer => b;
const MAX = 64 * 1024 * 1024;
const definition = {
  echo: {
    path: '/probe.Probe/Echo',
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
} as unknown as ServiceDefinition;

/** grpc-js internals read for the report only: the call under the Duplex, and its HTTP/2 stream. */
interface Internals {
  call: { readQueue: unknown[]; stream: { readableLength: number; state: { localWindowSize?: number } } };
}

async function probe(mode: 'pause' | 'gate', size: number): Promise<Record<string, unknown>> {
  let serverCall: ServerDuplexStream<Buffer, Buffer> | undefined;
  let delivered = 0;
  const server = new Server({ 'grpc.max_receive_message_length': MAX });
  server.addService(definition, {
    echo(call: ServerDuplexStream<Buffer, Buffer>) {
      serverCall = call;
      if (mode === 'gate') {
        // A budget that is full after the first message: the gate asks for nothing more.
        const mem = new MemoryBudget(1).open();
        const gate = new ReadGate(call, mem, (bytes) => bytes);
        call.on('data', () => {
          delivered++;
          mem.charge(gate.take() + 1);
        });
      } else {
        call.on('data', () => {
          delivered++;
          call.pause();
        });
      }
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const Client = makeGenericClientConstructor(definition, 'probe');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), {
    'grpc.max_send_message_length': MAX,
  }) as unknown as { echo(): NodeJS.WritableStream & { on(e: string, f: () => void): void } };
  const call = client.echo();
  call.on('error', () => {});
  const message = Buffer.alloc(size, 1);
  for (let i = 0; i < 100; i++) call.write(message);
  // Wait until the server side stops changing (the client is held back by flow control).
  let last = '';
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const c = serverCall as unknown as (ServerDuplexStream<Buffer, Buffer> & Internals) | undefined;
    const now = c ? `${delivered}/${c.readableLength}/${c.call.stream.readableLength}` : '';
    if (now !== '' && now === last) break;
    last = now;
  }
  const c = serverCall as unknown as ServerDuplexStream<Buffer, Buffer> & Internals;
  const result = {
    mode,
    messageBytes: size,
    delivered,
    bufferedInCall: c.readableLength,
    queuedInGrpcJs: c.call.readQueue.length,
    http2BufferedBytes: c.call.stream.readableLength,
    http2WindowLeft: c.call.stream.state.localWindowSize,
  };
  server.forceShutdown();
  return result;
}

for (const size of [1024 * 1024, 64 * 1024, 100]) {
  for (const mode of ['pause', 'gate'] as const) process.stdout.write(`${JSON.stringify(await probe(mode, size))}\n`);
}
process.exit(0);
