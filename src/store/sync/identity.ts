/**
 * A store's sync identity: a random site id made on first open, and a generation that grows each
 * time the store takes a new one. A store copied to another device, or restored from a backup,
 * must not go on as the same site (its peers would take its new writes for ones they already have),
 * so the store keeps a fingerprint of where it lives — host and file identity — and takes a new
 * identity when it opens somewhere else. A hub that knows more of a site's stream than the site
 * itself has (a restored copy on the same file) asks it for a new identity too (docs/sync.md).
 */
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import type { MapOps } from '../../backends/backend.js';
import { decodeCounter, encodeCounter } from '../kv/meta.js';
import type { Stamper } from '../kv/mvcc-batch.js';
import { HybridClock } from './clock.js';
import { SITE_BYTES, type SiteId } from './stamp.js';

const KEYS = {
  site: Buffer.from('sync_site'),
  generation: Buffer.from('sync_generation'),
  fingerprint: Buffer.from('sync_fingerprint'),
} as const;

/** Where a store file lives: host, device and inode (a copy or a restored file differs). */
export function fileFingerprint(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${hostname()}:${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

export class SiteIdentity implements Stamper {
  /** Until the store is open: a throwaway id (nothing is written before `load`). */
  site: SiteId = randomBytes(SITE_BYTES);
  generation = 0;
  /** Set when this open took a new identity (a copied or restored store), for the log. */
  renewedFrom: SiteId | undefined;

  constructor(readonly clock: HybridClock = new HybridClock()) {}

  get siteHex(): string {
    return this.site.toString('hex');
  }

  /** Reads the identity, making one (or a new one, if `fingerprint` changed) unless read-only. */
  async load(maps: MapOps, fingerprint: string | undefined, readOnly: boolean): Promise<void> {
    const site = await maps.get('meta', KEYS.site);
    const stored = await maps.get('meta', KEYS.fingerprint);
    this.generation = decodeCounter(await maps.get('meta', KEYS.generation));
    if (site !== undefined) this.site = Buffer.from(site);
    const moved = fingerprint !== undefined && stored !== undefined && stored.toString('utf8') !== fingerprint;
    if (readOnly || (site !== undefined && !moved)) {
      if (!readOnly && fingerprint !== undefined && stored === undefined) {
        await maps.put('meta', KEYS.fingerprint, Buffer.from(fingerprint, 'utf8'));
      }
      return;
    }
    if (site !== undefined) this.renewedFrom = this.site;
    await this.renew(maps);
    if (fingerprint !== undefined) await maps.put('meta', KEYS.fingerprint, Buffer.from(fingerprint, 'utf8'));
  }

  /** Takes a new site id (the next generation). Runs inside a KV batch. */
  async renew(maps: MapOps): Promise<void> {
    this.site = randomBytes(SITE_BYTES);
    this.generation += 1;
    await maps.put('meta', KEYS.site, this.site);
    await maps.put('meta', KEYS.generation, encodeCounter(this.generation));
  }
}
