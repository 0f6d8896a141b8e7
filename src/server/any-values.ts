/** SQL values packed as google.protobuf.Any with the standard well-known wrapper type URLs. */
import type { SqlValue } from '../backends/backend.js';
import type { Any } from '../generated/google/protobuf/any.js';
import { BoolValue, BytesValue, DoubleValue, Int64Value, StringValue } from '../generated/google/protobuf/wrappers.js';

const PREFIX = 'type.googleapis.com/google.protobuf.';
const toBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
/** google.protobuf.Value { null_value: NULL_VALUE }: field 1, varint 0. */
const NULL_VALUE = Buffer.from([0x08, 0x00]);

export function packValue(value: SqlValue): Any {
  switch (typeof value) {
    case 'bigint':
      return { typeUrl: `${PREFIX}Int64Value`, value: toBuffer(Int64Value.encode({ value }).finish()) };
    case 'number':
      // Backends hand integers over as bigint; a number is a floating-point column value.
      return { typeUrl: `${PREFIX}DoubleValue`, value: toBuffer(DoubleValue.encode({ value }).finish()) };
    case 'string':
      return { typeUrl: `${PREFIX}StringValue`, value: toBuffer(StringValue.encode({ value }).finish()) };
    case 'boolean':
      return { typeUrl: `${PREFIX}BoolValue`, value: toBuffer(BoolValue.encode({ value }).finish()) };
    default:
      if (value === null) return { typeUrl: `${PREFIX}Value`, value: NULL_VALUE };
      return {
        typeUrl: `${PREFIX}BytesValue`,
        value: toBuffer(BytesValue.encode({ value: toBuffer(value) }).finish()),
      };
  }
}

/** The inverse, for clients (the CLI, tests): Any back to a JavaScript value. */
export function unpackValue(any: Any): SqlValue {
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  switch (name) {
    case 'google.protobuf.Int64Value':
      return Int64Value.decode(any.value).value;
    case 'google.protobuf.DoubleValue':
      return DoubleValue.decode(any.value).value;
    case 'google.protobuf.StringValue':
      return StringValue.decode(any.value).value;
    case 'google.protobuf.BoolValue':
      return BoolValue.decode(any.value).value;
    case 'google.protobuf.BytesValue':
      return BytesValue.decode(any.value).value;
    case 'google.protobuf.Value':
      return null;
    default:
      throw new Error(`unexpected value type ${any.typeUrl}`);
  }
}
