import { closeSync, openSync, readSync } from 'node:fs';

/** The first `length` bytes of a file (fewer if it is shorter): how a backend recognises its own files. */
export function readFileHead(path: string, length: number): Buffer {
  const head = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, length, 0);
  } finally {
    closeSync(fd);
  }
  return head;
}
