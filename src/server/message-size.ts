/** How many bytes a message counts for in the memory budget. */

/** Set by the request deserializer (codec.ts): the size of the serialized message it decoded. */
export const WIRE_SIZE: unique symbol = Symbol('buffdb.wireSize');

/**
 * Counted per message on top of its data: the objects around the bytes (decoded message, closures,
 * queue entries). Keeps a flood of tiny messages from looking free.
 */
export const MESSAGE_OVERHEAD = 256;

/** A request's size: its serialized size when it came over the wire, else an estimate. */
export function requestBytes(message: unknown): number {
  const wire = (message as { [WIRE_SIZE]?: number } | null)?.[WIRE_SIZE];
  return (wire ?? payloadBytes(message)) + MESSAGE_OVERHEAD;
}

/** An answer's size before it is serialized: its bytes and string fields, plus the overhead. */
export function answerBytes(message: unknown): number {
  return payloadBytes(message) + MESSAGE_OVERHEAD;
}

/**
 * About the serialized size: bytes fields by length, strings by UTF-16 length (their UTF-8 length
 * for ASCII), 8 per scalar, nested messages and lists walked a few levels deep.
 */
export function payloadBytes(value: unknown, depth = 0): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'string') return value.length;
  if (value instanceof Uint8Array) return value.byteLength;
  if (typeof value !== 'object') return 8;
  if (depth > 4) return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (const v of value) n += payloadBytes(v, depth + 1);
    return n;
  }
  for (const k in value) {
    const field = (value as Record<string, unknown>)[k];
    // Unset and string fields (most of them) counted here: no call per field.
    if (typeof field === 'string') n += field.length;
    else if (field !== undefined && field !== null) n += payloadBytes(field, depth + 1);
  }
  return n;
}
