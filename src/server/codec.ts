/**
 * grpc-js method definitions built from the generated message codecs, with two changes from the
 * generated ones: strings must be valid UTF-8 (the generated decoder would silently substitute
 * U+FFFD), and a request that fails to decode reaches the handler as a `DecodeFailure`, so the
 * handler can answer INVALID_ARGUMENT in order (grpc-js alone would answer INTERNAL).
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { MethodDefinition } from '@grpc/grpc-js';

export class DecodeFailure {
  constructor(readonly message: string) {}
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

export function decodeStrict<T>(codec: Codec<T>, buf: Uint8Array, typeName: string): T | DecodeFailure {
  try {
    return codec.decode(new BinaryReader(buf, decodeUtf8));
  } catch (err) {
    return new DecodeFailure(`malformed ${typeName} message: ${(err as Error).message}`);
  }
}

export function method<Req, Res>(
  path: string,
  requestStream: boolean,
  responseStream: boolean,
  req: Codec<Req>,
  res: Codec<Res>,
): MethodDefinition<Req | DecodeFailure, Res> {
  const typeName = path.slice(path.lastIndexOf('/') + 1) + ' request';
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: (value) => toBuffer(req.encode(value as Req).finish()),
    requestDeserialize: (buf) => decodeStrict(req, buf, typeName),
    responseSerialize: (value) => toBuffer(res.encode(value).finish()),
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
