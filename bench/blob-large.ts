/**
 * The large-blob rows of the blob section (spec blob-streams.md): Upload of a 1 GiB blob and its
 * Download, each against the bare grpc-js echo of the same bytes in 1 MiB messages, and the peak
 * RSS of `buffdb run` over the blob section against the echo server's over the same section.
 */
import { writeFileSync } from 'node:fs';
import { downloadBlob, uploadBlob } from '../src/client/blob-transfer.js';
import type { BuffDbClients } from '../src/client/network.js';
import * as blobPb from '../src/generated/blob.js';
import { echoClient, log, memoryOf, pump } from './lib.js';

const MiB = 1024 * 1024;

export interface RatioRow {
  group: string;
  name: string;
  unit: string;
  referenceName: string;
}

/** Resets the kernel's peak-RSS mark of a process (VmHWM), so a section's peak is its own. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Upload and Download of `mib` MiB through `db`, and the echo of as many 1 MiB messages; `rounds` times. */
export async function largeBlobRows(
  db: BuffDbClients,
  echoAddr: string,
  mib: number,
  rounds: number,
  addRatioRow: (row: RatioRow, values: number[], refs: number[], min: number) => void,
): Promise<void> {
  const echo = echoClient(echoAddr, blobPb.UploadRequest);
  const payload = Buffer.alloc(MiB, 0xcd);
  const chunks = async function* (): AsyncGenerator<Buffer> {
    for (let i = 0; i < mib; i++) yield payload;
  };
  const mbps = (ms: number): number => (mib * MiB) / 1e6 / (ms / 1000);
  const echoR: number[] = [];
  const uploadR: number[] = [];
  const downloadR: number[] = [];
  for (let r = 0; r < rounds; r++) {
    echoR.push(mbps(await pump(echo.open(), mib, () => ({ chunk: payload }))));
    let t0 = performance.now();
    const { id } = await uploadBlob(db.blob, chunks(), { size: BigInt(mib * MiB) });
    uploadR.push(mbps(performance.now() - t0));
    t0 = performance.now();
    let bytes = 0;
    for await (const chunk of downloadBlob(db.blob, id) as AsyncIterable<Buffer>) bytes += chunk.length;
    if (bytes !== mib * MiB) throw new Error(`download served ${bytes} bytes of ${mib * MiB}`);
    downloadR.push(mbps(performance.now() - t0));
    log(
      `large blob round ${r + 1}/${rounds}: echo ${echoR.at(-1)!.toFixed(0)} MB/s, upload ${uploadR.at(-1)!.toFixed(0)}, download ${downloadR.at(-1)!.toFixed(0)}`,
    );
  }
  const what = mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`;
  const referenceName = `bare grpc-js echo of ${mib} × 1 MiB messages`;
  addRatioRow(
    { group: 'gRPC (sqlite)', name: `Upload ${what}, 1 MiB chunks`, unit: 'MB/s', referenceName },
    uploadR,
    echoR,
    0.6,
  );
  addRatioRow(
    { group: 'gRPC (sqlite)', name: `Download ${what}, 1 MiB chunks`, unit: 'MB/s', referenceName },
    downloadR,
    echoR,
    0.7,
  );
  echo.close();
}

/** Peak RSS (MiB) of both processes since `resetPeak`. */
export function sectionPeaks(buffPid: number, echoPid: number): { buff: number; echo: number } {
  return { buff: memoryOf(buffPid).hwm, echo: memoryOf(echoPid).hwm };
}
