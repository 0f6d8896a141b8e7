// The reference a buffdb stream is measured against: a bare @grpc/grpc-js bidi echo server, run
// as a child process exactly as `buffdb run` is. Bytes in are written straight back (no decoding),
// with the same backpressure rule buffdb follows. Prints "listening on ADDR" like `buffdb run`.
import { Server, ServerCredentials } from '@grpc/grpc-js';

const identity = (b) => b;
const MAX = 64 * 1024 * 1024;
const server = new Server({ 'grpc.max_receive_message_length': MAX, 'grpc.max_send_message_length': MAX });
/** A method that hands the handler the raw request bytes and sends raw bytes back. */
const raw = (path, stream) => ({
  path,
  requestStream: stream,
  responseStream: stream,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
server.addService(
  {
    echo: raw('/bench.Echo/Echo', true),
    // The reference for unary RPCs (the etcd API): the request bytes back as the answer.
    unary: raw('/bench.Echo/Unary', false),
  },
  {
    unary(call, callback) {
      callback(null, call.request);
    },
    echo(call) {
      call.on('data', (msg) => {
        if (!call.write(msg)) {
          call.pause();
          call.once('drain', () => call.resume());
        }
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  },
);
server.bindAsync(process.argv[2] ?? '127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`echo server: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`listening on 127.0.0.1:${port}\n`);
});
const stop = () => {
  setTimeout(() => process.exit(0), 2000).unref();
  server.tryShutdown(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
