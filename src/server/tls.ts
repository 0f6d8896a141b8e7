/**
 * TLS and mutual TLS for the server, with certificates that can be replaced while it runs: the
 * files are read at start and again on reload() (SIGHUP in `buffdb run`); connections made after a
 * reload use the new files, connections already open keep theirs.
 *
 * grpc-js takes reloadable certificates through its certificate-provider credentials; this file
 * is the provider (the one grpc-js ships polls files on a timer instead of reloading on demand).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

export interface TlsFiles {
  /** PEM certificate chain the server presents. */
  cert: string;
  /** PEM private key of `cert`. */
  key: string;
  /** PEM CA bundle: when set, clients must present a certificate signed by it (mutual TLS). */
  clientCa?: string;
}

interface Loaded {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
  /** When the server certificate stops being valid. */
  notAfter: Date;
}

export function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EACCES'
          ? 'permission denied'
          : e.code === 'EISDIR'
            ? 'is a directory'
            : e.message;
    throw new Error(`cannot read the ${what} ${path}: ${reason}`);
  }
}

function parseCertificate(pem: Buffer, path: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new Error(`the ${what} ${path} is not a PEM certificate`);
  }
}

/** Reads and checks the files: each parses, and the key belongs to the certificate. */
export function loadTlsFiles(files: TlsFiles): Loaded {
  const cert = readPem(files.cert, 'TLS certificate');
  const key = readPem(files.key, 'TLS key');
  const ca = files.clientCa === undefined ? undefined : readPem(files.clientCa, 'client CA file');
  const x509 = parseCertificate(cert, files.cert, 'TLS certificate');
  let keyObject: ReturnType<typeof createPrivateKey>;
  try {
    keyObject = createPrivateKey(key);
  } catch {
    throw new Error(`the TLS key ${files.key} is not a PEM private key`);
  }
  if (!x509.checkPrivateKey(keyObject)) {
    throw new Error(`the TLS key ${files.key} does not belong to the certificate ${files.cert}`);
  }
  if (ca !== undefined) parseCertificate(ca, files.clientCa!, 'client CA file');
  return { cert, key, ca, notAfter: new Date(x509.validTo) };
}

/** A certificate provider whose files are read again on reload(). */
export class ReloadableTls implements CertificateProvider {
  private loaded: Loaded;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  readonly credentials: ServerCredentials;

  /** Throws a one-line error naming the file if a file is missing or bad. */
  constructor(readonly files: TlsFiles) {
    this.loaded = loadTlsFiles(files);
    const mutual = files.clientCa !== undefined;
    // (identity provider, CA provider or null, require a client certificate)
    this.credentials = experimental.createCertificateProviderServerCredentials(this, mutual ? this : null, mutual);
  }

  get notAfter(): Date {
    return this.loaded.notAfter;
  }

  /** Reads the files again. On a bad file it throws and the previous certificates stay in use. */
  reload(): void {
    this.loaded = loadTlsFiles(this.files);
    for (const l of this.identityListeners) l(this.identity());
    for (const l of this.caListeners) l(this.ca());
  }

  private identity() {
    return { certificate: this.loaded.cert, privateKey: this.loaded.key };
  }

  private ca() {
    return this.loaded.ca ? { caCertificate: this.loaded.ca } : null;
  }

  // grpc-js registers its listeners while it sets up a listening socket and expects the first
  // update afterwards (as its own file watcher does), hence nextTick.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(() => listener(this.ca()));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    process.nextTick(() => listener(this.identity()));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}
