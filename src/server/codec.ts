/**
 * grpc-js method definitions built from the generated message codecs, with two changes from the
 * generated ones: strings must be valid UTF-8 (the generated decoder would silently substitute
 * U+FFFD), and a request that fails to decode reaches the handler as a `DecodeFailure`, so the
 * handler can answer INVALID_ARGUMENT in order (grpc-js alone would answer INTERNAL).
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { MethodDefinition } from '@grpc/grpc-js';
import * as blob from '../generated/blob.js';
import * as kv from '../generated/kv.js';
import { WIRE_SIZE } from './message-size.js';

/**
 * A request that cannot be served as sent, answered in order with `code`: a message that did not
 * decode (INVALID_ARGUMENT), or one the permission check refused (PERMISSION_DENIED, auth-interceptor.ts).
 */
export class DecodeFailure {
  constructor(
    readonly message: string,
    readonly code: number = 3, // INVALID_ARGUMENT
  ) {}
}

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: BinaryReader | Uint8Array): T;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const decodeUtf8 = (bytes: Uint8Array): string => {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new Error('a string field is not valid UTF-8');
  }
};

/** Wraps the encoder's bytes without copying them again. */
const toBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

/**
 * One field of a message made only of length-delimited fields (strings and bytes), which is most
 * buffdb messages. `optional`: proto3 explicit presence (written unless undefined); otherwise the
 * field is written unless empty, exactly as the generated encoder does. A `message` field (always
 * optional) is left to the generated codec: a message that has it set is encoded and decoded by
 * the generated code (Upload's header, Download's header: one per call).
 */
type FlatField = readonly [field: number, name: string, kind: 'string' | 'bytes' | 'message', optional: boolean];

const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

/**
 * A direct encoder for a flat message: one exact-size Buffer, strings written straight into it,
 * bytes copied once — instead of the generated encoder's writer, chunk list and final copy (the
 * protobuf share of a Kv Set profile). Output is byte-for-byte the generated encoder's; anything
 * it does not expect (a non-string where a string belongs) goes to the generated encoder.
 */
function flatEncoder<T>(fields: readonly FlatField[], fallback: Codec<T>, reuse: boolean): (message: T) => Buffer {
  const count = fields.length;
  let scratch: Buffer | undefined;
  /** An answer of `size` bytes: written into `scratch` when it is reused (see `flat`). */
  const output = (size: number): Buffer => {
    if (!reuse || size < REUSE_MIN || size > REUSE_MAX) return Buffer.allocUnsafe(size);
    if (scratch === undefined || scratch.length < size) scratch = Buffer.allocUnsafeSlow(size);
    return scratch.subarray(0, size);
  };
  return (message: T): Buffer => {
    const m = message as Record<string, unknown>;
    let size = 0;
    for (let i = 0; i < count; i++) {
      const [, name, kind, optional] = fields[i]!;
      const v = m[name];
      if (v === undefined && optional) continue;
      let len: number;
      if (kind === 'message') return toBuffer(fallback.encode(message).finish());
      if (kind === 'string') {
        if (typeof v !== 'string') return toBuffer(fallback.encode(message).finish());
        if (v === '' && !optional) continue;
        len = Buffer.byteLength(v, 'utf8');
      } else {
        if (!(v instanceof Uint8Array)) return toBuffer(fallback.encode(message).finish());
        if (v.byteLength === 0 && !optional) continue;
        len = v.byteLength;
      }
      size += 1 + varintSize(len) + len;
    }
    const buf = output(size);
    let pos = 0;
    for (let i = 0; i < count; i++) {
      const [field, name, kind, optional] = fields[i]!;
      const v = m[name] as string | Uint8Array | undefined;
      if (v === undefined) continue;
      const isString = kind === 'string';
      if (!optional && (isString ? v === '' : (v as Uint8Array).byteLength === 0)) continue;
      buf[pos++] = (field << 3) | 2;
      const len = isString ? Buffer.byteLength(v as string, 'utf8') : (v as Uint8Array).byteLength;
      let n = len;
      while (n >= 0x80) {
        buf[pos++] = (n & 0x7f) | 0x80;
        n >>>= 7;
      }
      buf[pos++] = n;
      if (isString) pos += buf.write(v as string, pos, len, 'utf8');
      else {
        buf.set(v as Uint8Array, pos);
        pos += len;
      }
    }
    return buf;
  };
}

/**
 * A direct decoder for a flat message with a bytes field (a request that carries data): the bytes
 * are a view of the received message rather than the generated decoder's copy of them (grpc-js
 * hands each message over in a buffer of its own, a few bytes larger than its data). A small
 * field in a larger buffer is copied, so a view never keeps more memory alive than it shows.
 * Anything it does not expect (an unknown field, another wire type, a `message` field) is
 * decoded by the generated decoder from the start; strings are decoded strictly by both.
 */
function flatDecoder<T>(fields: readonly FlatField[], fallback: Codec<T>): (reader: BinaryReader) => T {
  const byTag = new Map(fields.map((f) => [(f[0] << 3) | 2, f]));
  return (reader: BinaryReader): T => {
    const m: Record<string, unknown> = {};
    for (const [, name, kind, optional] of fields)
      m[name] = optional ? undefined : kind === 'string' ? '' : Buffer.alloc(0);
    const start = reader.pos;
    while (reader.pos < reader.len) {
      const f = byTag.get(reader.uint32());
      if (f === undefined || f[2] === 'message') {
        reader.pos = start;
        return fallback.decode(reader);
      }
      if (f[2] === 'string') m[f[1]] = reader.string();
      else {
        const v = reader.bytes();
        m[f[1]] =
          v.byteLength * 2 >= v.buffer.byteLength ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.from(v);
      }
    }
    return m as T;
  };
}

/** Flat messages get the direct encoder (registered below through `flat`). */
const flatEncoders = new WeakMap<object, (message: never) => Buffer>();
/** …and those that reuse their output buffer, the one `method` serializes answers with. */
const answerEncoders = new WeakMap<object, (message: never) => Buffer>();
/** Flat messages with a bytes field get the direct decoder too (`decodeStrict`). */
const flatDecoders = new WeakMap<object, (reader: BinaryReader) => unknown>();

/** Answers from this size up may be serialized into a reused buffer (below it: nothing to gain). */
const REUSE_MIN = 64 * 1024;
/** …up to the largest Download chunk (4 MiB) and its header: a larger Get answer gets its own. */
const REUSE_MAX = 4 * 1024 * 1024 + 1024;

/**
 * Declares `codec` a flat message (fields 1..n as listed) so `method` encodes it directly.
 *
 * `reuse` (answers that carry stored data: Get, Download): as an answer (`responseSerialize`), a
 * large message is serialized into one buffer kept by the encoder and reused for the next answer,
 * rather than into a new one each time, which would be garbage as soon as it is framed. The
 * grpc-js server copies the serialized bytes into the message's frame in the same synchronous call
 * that serializes it (`serializeMessage` in server-interceptors.js) and keeps nothing else of
 * them. A request serializer's output is held by the client until it is sent, so `serializer`
 * (requests, clients) never reuses.
 */
export function flat<T>(codec: Codec<T>, fields: readonly FlatField[], reuse = false): Codec<T> {
  for (const [field] of fields) if (field < 1 || field > 15) throw new Error('flat fields must be numbered 1..15');
  flatEncoders.set(codec, flatEncoder(fields, codec, false));
  if (reuse) answerEncoders.set(codec, flatEncoder(fields, codec, true));
  if (fields.some(([, , kind]) => kind === 'bytes')) flatDecoders.set(codec, flatDecoder(fields, codec));
  return codec;
}

/** How `method` serializes `codec` messages (the direct encoder when the message is flat). */
export function serializer<T>(codec: Codec<T>): (value: T) => Buffer {
  const direct = flatEncoders.get(codec) as ((message: T) => Buffer) | undefined;
  return direct ?? ((value: T) => toBuffer(codec.encode(value).finish()));
}

/** Decodes a request and records its serialized size on it (`WIRE_SIZE`, for the memory budget). */
export function decodeStrict<T>(codec: Codec<T>, buf: Uint8Array, typeName: string): T | DecodeFailure {
  let message: T | DecodeFailure;
  try {
    const reader = new BinaryReader(buf, decodeUtf8);
    const direct = flatDecoders.get(codec) as ((reader: BinaryReader) => T) | undefined;
    message = direct ? direct(reader) : codec.decode(reader);
  } catch (err) {
    message = new DecodeFailure(`malformed ${typeName} message: ${(err as Error).message}`);
  }
  // Not enumerable: the message still equals (and prints as) the plain decoded value.
  if (typeof message === 'object' && message !== null) {
    Object.defineProperty(message, WIRE_SIZE, { value: buf.length, writable: true });
  }
  return message;
}

export function method<Req, Res>(
  path: string,
  requestStream: boolean,
  responseStream: boolean,
  req: Codec<Req>,
  res: Codec<Res>,
): MethodDefinition<Req | DecodeFailure, Res> {
  const typeName = `${path.slice(path.lastIndexOf('/') + 1)} request`;
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: serializer(req) as (value: Req | DecodeFailure) => Buffer,
    requestDeserialize: (buf) => decodeStrict(req, buf, typeName),
    responseSerialize: (answerEncoders.get(res) as ((message: Res) => Buffer) | undefined) ?? serializer(res),
    responseDeserialize: (buf) => res.decode(buf),
    originalName: path.slice(path.lastIndexOf('/') + 1).replace(/^./, (c) => c.toLowerCase()),
  };
}

/** google.protobuf.BoolValue as a plain boolean, as the generated client exposes it. */
export const BoolCodec: Codec<boolean> = {
  encode: (value) => ({ finish: () => (value ? Uint8Array.of(8, 1) : new Uint8Array(0)) }),
  decode: (input) => {
    const reader = input instanceof BinaryReader ? input : new BinaryReader(input);
    let value = false;
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      if (tag === 8) value = reader.bool();
      else reader.skip(tag & 7);
    }
    return value;
  },
};

// The flat buffdb messages: every Kv stream message, and the blob messages that carry data.
flat(kv.GetRequest, [
  [1, 'key', 'string', false],
  [2, 'transactionId', 'string', true],
]);
flat(kv.GetResponse, [[1, 'value', 'string', false]]);
flat(kv.SetRequest, [
  [1, 'key', 'string', false],
  [2, 'value', 'string', false],
  [3, 'transactionId', 'string', true],
]);
flat(kv.SetResponse, [[1, 'key', 'string', false]]);
flat(kv.DeleteRequest, [
  [1, 'key', 'string', false],
  [2, 'transactionId', 'string', true],
]);
flat(kv.DeleteResponse, [[1, 'key', 'string', false]]);
flat(kv.EqRequest, [[1, 'key', 'string', false]]);
flat(kv.NotEqRequest, [[1, 'key', 'string', false]]);
flat(
  blob.GetResponse,
  [
    [1, 'bytes', 'bytes', false],
    [2, 'metadata', 'string', true],
  ],
  true,
);
flat(
  blob.DownloadResponse,
  [
    [1, 'header', 'message', true],
    [2, 'chunk', 'bytes', true],
  ],
  true,
);
flat(blob.UploadRequest, [
  [1, 'header', 'message', true],
  [2, 'chunk', 'bytes', true],
]);
flat(blob.StoreRequest, [
  [1, 'bytes', 'bytes', false],
  [2, 'metadata', 'string', true],
  [3, 'transactionId', 'string', true],
]);
