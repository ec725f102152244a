import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { Readable, Transform, Writable, type TransformCallback } from 'stream';
import { finished, pipeline } from 'stream/promises';
import { mapLimit } from '../util/fs';
import { cacheConfigOf, finalChain, finalLayers } from '../oci/cache-config';
import { CACHE_TAG, children, reachable, type Descriptor, type Index } from '../oci/layout';
import { goArch, OCI_MANIFEST, prefetchImage, type PrefetchImage } from '../oci/prefetch';
import type { BlobRef } from '../store/types';
import {
  basicAuthorized,
  canonicalManifest,
  CHALLENGE,
  errorBody,
  manifestMediaType,
  parseRange,
  parseRoute,
  type ErrorCode,
  type Route,
} from './protocol';
import type { EntryReader, EntryWriter, ExportedLayout, FacadeEvent, FacadeStats } from './types';
import { BlobVerifier, DigestMismatchError, StalledError, toError, Watchdog } from './verify';

export interface FacadeOptions {
  /** The restored entry, served under `importRef`; without it that tag is unknown (a miss). */
  readonly reader?: EntryReader;
  /** Where the export under `exportRef` goes; without it every push is refused (a read-only cache). */
  readonly writer?: EntryWriter;
  /** The one repository the facade serves. */
  readonly repository?: string;
  /** A socket, a store call or a blob stream that makes no progress for this long is given up, with an error to BuildKit. */
  readonly idleTimeoutMs?: number;
  /** How long a connection may stay quiet before the server drops it (default 2 × idleTimeoutMs + 1 s). */
  readonly socketTimeoutMs?: number;
  /**
   * After a store call for the export fails, the export's later calls fail at once for this long
   * (BuildKit retries a push after 1, 2 and 4 s; each would otherwise wait for the store's own
   * retries or the idle timeout again); after it, the store is asked again.
   */
  readonly storeDownMs?: number;
  /** The largest manifest accepted or served (the distribution registry's limit is 4 MiB). */
  readonly maxManifestBytes?: number;
  /** Where chunked uploads (PATCH) wait, on disk, until their digest is known. */
  readonly spoolDir?: string;
  /**
   * Keep a copy, in spoolDir, of each blob served whole from the restored entry (only the layers
   * of its last results when its cache config names them: see worthCopying) and of each blob
   * uploaded here that a second push sends again (the image's new layers: see wantsCopyOfUpload),
   * and serve it from there again (the engine's pull of an image pushed here reads the
   * layers the build read or wrote): for a remote store, whose blobs would otherwise come over the
   * network twice. Deleted on close. Can also be switched on later (keepCopiesFromNow).
   */
  readonly keepCopies?: boolean;
  /** The most the copies of keepCopies may take on disk; blobs beyond it are not copied (default 2 GiB). */
  readonly copyBudgetBytes?: number;
  /** Called for each event as it happens; `events` keeps them too. */
  readonly onEvent?: (event: FacadeEvent) => void;
}

/** The tag under which the restored entry is served, and the one the export is pushed to. */
export const IMPORT_TAG = 'restore';
export const EXPORT_TAG = 'save';
/**
 * The tag an image is pushed to so that the engine can pull it (see `imageRef`): kept by the facade
 * while it runs, never written as an entry.
 */
export const IMAGE_TAG = 'image';
/** The tag of the image of the restored cache's last layer chain, for the engine to pull while the build runs (see prefetchRef). */
export const PREFETCH_TAG = 'prefetch';
const API_VERSION = { 'Docker-Distribution-API-Version': 'registry/2.0' };
const OCTET = 'application/octet-stream';
/**
 * How long after the engine asked for the built image's manifest the prefetch's reads still waiting
 * (layers the build did not read) are refused. Not before: the image's pull must first take the
 * layers the prefetch brought (a pull that fails gives its layers up), which it does as it starts.
 * Not much later: each waiting read holds one of the engine's concurrent downloads (3 by default),
 * which the image's new layers need.
 */
const PREFETCH_GRACE_MS = 500;
/** A request of the docker engine (a pull), by its user agent (`docker/26.1.5 go/…`); BuildKit's is `buildkit/…`. */
const fromEngine = (req: http.IncomingMessage): boolean => /^docker\//.test(req.headers['user-agent'] ?? '');

/**
 * The store failed or stalled in a call: the request gets a 500 and the event is already reported.
 * `recent`: the export's store failed moments ago (storeDownMs) and was not asked again; the request
 * gets a 403, which BuildKit does not retry, since its retries (after 1, 2 and 4 s) would all fall
 * within that time and fail the same way.
 */
class StoreFailure extends Error {
  override name = 'StoreFailure';
  constructor(
    message: string,
    readonly recent = false,
  ) {
    super(message);
  }
}

interface UploadSession {
  readonly id: string;
  /** The file that chunks (PATCH) are appended to, once there is one. */
  spool?: string;
  size: number;
  busy: boolean;
}

/** An image pushed to IMAGE_TAG: its manifest (or index), and every blob it reaches with its size. */
interface PushedImage {
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly digest: string;
  readonly blobs: ReadonlyMap<string, number>;
}

interface Committed {
  readonly layout: ExportedLayout;
  readonly pushed: { readonly bytes: Buffer; readonly mediaType: string };
}

/**
 * The task's cache store, served to BuildKit as an OCI registry on loopback while a build runs, so
 * that BuildKit imports and exports its cache with `type=registry` straight from and to the store,
 * reading only the blobs the build needs, instead of a whole folder travelling through the buildx
 * session both ways.
 *
 * ## What BuildKit does against a registry cache (measured, not assumed)
 *
 * Measured through a recording proxy in front of Debian's docker-registry 2.8 (htpasswd), with the
 * `docker` driver of dockerd 26.1 (its vendored BuildKit, containerd image store) and with a host
 * buildkitd v0.32.2 through the `remote` driver (buildx 0.36.1); a 20 MiB layer and five small ones,
 * `--cache-to type=registry,ref=…,mode=max,image-manifest=true,oci-mediatypes=true`, `--cache-from type=registry,ref=…`:
 *
 * - **Export.** For each blob (layers, then the cache config): `HEAD /v2/<name>/blobs/<digest>`; a
 *   200 means no upload. Otherwise one monolithic upload: `POST /v2/<name>/blobs/uploads/` (empty
 *   body) → 202 with a Location, then `PUT <location>?digest=<digest>` with the whole blob and its
 *   Content-Length. No PATCH, no chunked transfer, no cross-repository mount (not even when exporting
 *   to another repository of the same host: BuildKit then downloaded every imported layer and
 *   uploaded it again, 22 MB both ways), no Range. dockerd's BuildKit uploads one blob at a time,
 *   BuildKit 0.32 up to four at once. Last: `HEAD /v2/<name>/manifests/<tag>`, and if the registry
 *   answers 200 with the digest BuildKit is about to push, no PUT at all; otherwise
 *   `PUT /v2/<name>/manifests/<tag>` with Content-Type `application/vnd.oci.image.manifest.v1+json`
 *   (`application/vnd.oci.image.index.v1+json` without `image-manifest=true`). Always by tag.
 * - **Import.** `HEAD /v2/<name>/manifests/<tag>` (Accept: the OCI and Docker manifest and index
 *   types), `GET /v2/<name>/manifests/<digest>`, `GET` of the cache config blob; then layers only
 *   when a step needs them: a fully cached build with `--output type=cacheonly` downloaded no layer
 *   at all (4 KB of a 4 MB cache: the manifest and the cache config), a build whose last step
 *   changed downloaded the layers under it that the builder lacked (3.0 MB with the docker driver,
 *   whose engine has the base image; 4.1 MB, all of it, in a docker-container builder). Whole GETs,
 *   never a Range. A missing tag (404) is not an error: the build goes on without the import.
 * - **Blobs imported lazily stay lazy**: exporting to the same repository after an import HEADs
 *   them (200) and neither downloads nor uploads them. So the facade serves import and export from
 *   one repository, under two tags: `restore` for the entry read, `save` for the one written, which
 *   also makes BuildKit always PUT the manifest (its HEAD of `save` is a 404 until the commit).
 * - **The cache manifest is the local exporter's root.** The same build exported with
 *   `type=local,…,image-manifest=true,oci-mediatypes=true` and with `type=registry,…` (same flags)
 *   gives the same manifest, byte for byte (sha256:07bb5ee6… both ways); without `image-manifest`
 *   both give the same cache index (sha256:9dc543fe…), and the config and layer blobs are the same
 *   in all four. So an entry that the store keeps (index.json tagging that root, and its blobs) is
 *   served as the registry cache as it is, and an export through the facade is written as an entry
 *   that a `type=local` import reads as well. One difference: after an import from a registry,
 *   BuildKit marks each imported layer with where it came from, `containerd.io/distribution.source.ref:
 *   127.0.0.1:PORT/<name>:<tag>` (dockerd) or `containerd.io/distribution.source.127.0.0.1: <name>`
 *   (0.32); the facade removes those before the commit (see canonicalManifest), so the same cache
 *   keeps the same root digest from job to job whatever the port.
 * - **Credentials.** Each new scope starts with an anonymous request; the 401's
 *   `WWW-Authenticate: Basic realm=…` makes BuildKit ask the buildx client over the session for the
 *   host's credentials (the progress shows `[auth] sharing credentials for 127.0.0.1:PORT`), which
 *   the client reads from its DOCKER_CONFIG's `auths`, and every later request carries them.
 *   Hence Basic, with a random password per facade written into the job-private DOCKER_CONFIG (see
 *   login.ts): a Bearer flow would add a token endpoint and a round trip, and its token request
 *   would carry the same secret from the same file. The config is written directly, not with
 *   `docker login`: measured, `docker login` has the daemon (dockerd) ping the registry, which a
 *   remote daemon cannot do on this machine's loopback.
 * - **Plain HTTP on 127.0.0.1.** BuildKit 0.32 talks plain HTTP to 127.0.0.1 with no configuration,
 *   both as a host buildkitd (remote driver) and in a `docker-container` builder created with
 *   `--driver-opt network=host` (its image assembled from shared/buildkit, with a socat stand-in for
 *   buildctl as issue 11's hosted engine does): a miss, then hits, through the facade. Without
 *   `network=host` the builder's 127.0.0.1 is its own, and the facade out of reach.
 *   dockerd's BuildKit (127.0.0.0/8 is an insecure registry by default) first opens TLS for the
 *   export and falls back to HTTP only when the server answers the TLS hello with an HTTP response.
 *   Node's HTTP server does that by default (a 400 to the unparseable hello); a server that just
 *   closed such a connection made every export fail ("Head https://127.0.0.1:PORT/…: EOF"), measured.
 * - **Failures** (dockerd's BuildKit, through this facade). A blob GET answered 500, or cut short,
 *   fails the build at once ("failed to read expected number of bytes: unexpected EOF"): no retry,
 *   no Range to resume. An import whose manifest cannot be had (404, 500) is not an error: the build
 *   goes on without the cache. A blob upload answered 500 is tried three more times (after 1, 2 and
 *   4 s), then the build fails ("error writing layer blob"); a manifest PUT answered 500 fails it
 *   at once. So the task must treat a failed build with a `corrupt` or `store` event as cache
 *   trouble, and build again without the cache, as it does today with the folder. With
 *   `ignore-error=true` on the export (see flags.ts) a failed export is only logged.
 * - **Progress.** A cached step whose layer BuildKit pulls from the registry cache (because the step
 *   above it runs) is often shown only as its download and extraction, without `CACHED`: with
 *   dockerd's BuildKit in 5 runs of 6 through the facade, against 0 of 6 from the same cache as a
 *   `type=local` folder; BuildKit 0.32 too. The step did not run in any of them. The task's count of
 *   cached steps (docker/progress.ts) must count such a step as cached before the facade is used.
 *
 * ## What the facade promises
 *
 * - Bound to 127.0.0.1 on an ephemeral port; every request must carry this facade's Basic
 *   credentials, anything else gets a 401 (so the per-job password is the only way in).
 * - Blobs are served only if the restored entry, or the image pushed to `image` (for the engine's
 *   pull, see imageRef), reaches them, streamed from the store and hashed
 *   as they pass; the last piece of each response is held back until the whole blob has matched, so
 *   a blob that fails its digest is never served whole: the response is cut short, BuildKit sees an
 *   error, the digest is reported (`corrupt`) and unknown from then on.
 * - Uploads stream into the store through the same check, so a blob that fails its digest never
 *   counts. Blobs the store already has are acknowledged (HEAD 200, or a mount) without an
 *   upload, once the writer has said so (which also keeps them for the save), even those of the
 *   restored entry; an upload acknowledged so is read to its end before the answer. A new layer
 *   that the image and the cache push at once goes into the store once: the second upload is read
 *   to its end (into the layer's copy with keepCopies, else discarded) and answered then, without
 *   waiting for the first; only a manifest that reaches the layer waits for the first upload to
 *   end. Holding the second upload, or a HEAD, until the first ended deadlocked BuildKit's pushes
 *   for the idle timeout, measured in the end-to-end tests, so no blob request waits for another.
 * - The manifest PUT to `save` is checked for completeness (every blob it reaches present, with its
 *   size) and only then committed, once; nothing is written as an entry before.
 * - Memory stays bounded: blobs are streamed, never buffered (chunked uploads are spooled to disk);
 *   only manifests, limited in size, are held. Every store call and stream has an idle timeout, so a
 *   store that fails or hangs mid-build becomes an error for BuildKit, never a hang; after a store call
 *   for the export failed, the export's calls fail at once for `storeDownMs`, so that BuildKit's
 *   retries of a push do not each wait for it again.
 */
export class RegistryFacade {
  readonly username = 'buildx-cache';
  /** The per-facade password: register it as a secret before it goes anywhere. */
  readonly password = crypto.randomBytes(32).toString('base64url');
  readonly repository: string;
  readonly events: FacadeEvent[] = [];
  readonly stats: FacadeStats = {
    requests: 0,
    unauthorized: 0,
    served: 0,
    bytesServed: 0,
    uploaded: 0,
    bytesUploaded: 0,
    acknowledged: 0,
    pulled: 0,
    bytesPulled: 0,
  };

  private readonly reader: EntryReader | undefined;
  private readonly writer: EntryWriter | undefined;
  private readonly readerBlobs: Map<string, BlobRef>;
  private readonly idleMs: number;
  private readonly maxManifest: number;
  private readonly spoolDir: string;
  private readonly onEvent: ((event: FacadeEvent) => void) | undefined;
  private readonly server: http.Server;
  private readonly closing = new AbortController();
  private readonly inflight = new Set<Promise<void>>();
  private readonly sessions = new Map<string, UploadSession>();
  /** Blobs known to be in the store: uploaded here, or said present by the writer. */
  private readonly known = new Map<string, number>();
  /** Blobs that failed their digest on the way out: never served again, never acknowledged. */
  private readonly bad = new Set<string>();
  /** Manifests pushed by digest (children of an index), for the index pushed after them. */
  private readonly pushedManifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  /**
   * The last failure of a store call for the export (has, put, commit), or of the spool under it,
   * or of a read that could not reach the store: for storeDownMs after it, the export's store
   * calls fail at once with it.
   */
  private writerDown: { message: string; until: number } | undefined;
  private readonly storeDownMs: number;
  private keepCopies: boolean;
  private readonly copyBudget: number;
  /** Bytes of the copies made or being made. */
  private copyBytes = 0;
  /** digest → a verified copy of a blob served or stored (keepCopies). */
  private readonly copies = new Map<string, string>();
  /**
   * Which of the restored entry's blobs are worth a copy: the layers of its last results (see
   * finalLayers), the ones the next image is likely to be made of; undefined: every blob. Read from
   * the entry's cache config when copies are switched on.
   */
  private copyPlan: Promise<ReadonlySet<string> | undefined> | undefined;
  /** The restored entry's cache config, parsed; undefined when there is none or it does not read. */
  private cacheConfig: Promise<unknown> | undefined;
  /** The image of the restored cache's last layer chain (see prefetchRef), once it was asked for. */
  private prefetch: Promise<PrefetchImage | undefined> | undefined;
  private prefetched: (PrefetchImage & { readonly layers: ReadonlyMap<string, number> }) | undefined;
  /** Whether a prefetch read was refused (a layer the build did not read). */
  private prefetchRefused = false;
  /**
   * The blobs BuildKit began to read. From a store whose reads are downloads (keepCopies: Azure),
   * the engine's pull of the prefetch image gets a layer only once BuildKit reads it too, or the
   * image pushed here has it (a base layer, which BuildKit takes from the base image's registry),
   * so that a layer the build does not use (the old dependencies, after they changed) is not
   * downloaded for nothing; the others are refused at endPrefetch, or PREFETCH_GRACE_MS after the
   * engine asked for the built image. From the local store it gets every layer at once: a layer
   * read for nothing costs a disk read, not a download.
   */
  private readonly readByBuild = new Set<string>();
  /** Called when BuildKit begins to read a blob, or at endPrefetch: each waiting prefetch read looks again. */
  private readonly prefetchWaiters = new Set<() => void>();
  private prefetchEnded = false;
  /**
   * digest → a read of it from the store that is making its copy (keepCopies), settled when it
   * ended. Another read of the digest meanwhile (the engine's pull beside BuildKit's) waits for it
   * and reads the copy, so that the blob is downloaded from the store once.
   */
  private readonly copying = new Map<string, Promise<void>>();
  /**
   * digest → the upload of it into the store in flight (settles when it ends, however). Another
   * upload of the digest meanwhile (the image and the cache push a new layer at once) is read and
   * discarded, not stored again; a manifest that reaches the digest waits for this one.
   */
  private readonly storing = new Map<string, Promise<void>>();
  /** Blobs stored from an upload to this facade (see copyOfUpload). */
  private readonly uploadedHere = new Set<string>();
  /** Copy an uploaded blob at its first upload (see keepCopiesFromNow). */
  private copyFirstUploads = false;
  private rootBytes: Promise<Buffer | undefined> | undefined;
  private committed: Committed | undefined;
  private image: PushedImage | undefined;
  private commitQueue: Promise<unknown> = Promise.resolve();
  private port = 0;

  private constructor(options: FacadeOptions) {
    this.reader = options.reader;
    this.writer = options.writer;
    this.repository = options.repository ?? 'buildx-cache';
    this.readerBlobs = new Map((options.reader?.blobs ?? []).map((b) => [b.digest, b]));
    this.idleMs = options.idleTimeoutMs ?? 60_000;
    this.storeDownMs = options.storeDownMs ?? 15_000;
    this.maxManifest = options.maxManifestBytes ?? 4 << 20;
    this.spoolDir = options.spoolDir ?? os.tmpdir();
    this.keepCopies = options.keepCopies === true;
    this.copyBudget = options.copyBudgetBytes ?? 2 * 1024 ** 3;
    this.onEvent = options.onEvent;
    this.server = http.createServer((req, res) => this.track(this.handle(req, res)));
    // Uploads can be long; a connection is given up only when it goes quiet.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = Math.min(this.idleMs, 60_000);
    // A backstop: store calls and streams have their own idle timeout, after which the facade
    // still answers; the socket's must be longer.
    this.server.timeout = options.socketTimeoutMs ?? 2 * this.idleMs + 1_000;
    // No clientError handler on purpose: Node answers a TLS hello with "400 Bad Request", which is
    // what makes dockerd's BuildKit fall back from HTTPS to HTTP (see above).
  }

  /** Starts a facade on 127.0.0.1 and an ephemeral port. */
  static async start(options: FacadeOptions = {}): Promise<RegistryFacade> {
    const facade = new RegistryFacade(options);
    await new Promise<void>((resolve, reject) => {
      facade.server.once('error', reject);
      facade.server.listen(0, '127.0.0.1', () => {
        facade.server.off('error', reject);
        resolve();
      });
    });
    facade.port = (facade.server.address() as AddressInfo).port;
    return facade;
  }

  /** `127.0.0.1:PORT`, the registry host BuildKit is given and the key of the login in DOCKER_CONFIG. */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The reference for `--cache-from type=registry,ref=…`. */
  get importRef(): string {
    return `${this.host}/${this.repository}:${IMPORT_TAG}`;
  }

  /** The reference for `--cache-to type=registry,ref=…`. */
  get exportRef(): string {
    return `${this.host}/${this.repository}:${EXPORT_TAG}`;
  }

  /**
   * The reference an image is pushed to, `--output type=image,name=…,push=true`, for the engine to
   * pull it from (`docker pull`) instead of BuildKit streaming it through the buildx session
   * (`--load`). The same repository as the cache, so that the layers BuildKit imported lazily from
   * the cache are acknowledged without a download and an upload (see above); pushed blobs go into
   * the store like the export's, and the engine's pull reads them back from it. Needs the writer.
   */
  get imageRef(): string {
    return `${this.host}/${this.repository}:${IMAGE_TAG}`;
  }

  /**
   * From now on, keep copies of the blobs served or stored (see FacadeOptions.keepCopies).
   * `firstUploads`: copy a blob at its first upload, for when the image's layers are not the
   * cache's (a cache compressed otherwise than the image, with zstd or none): each is then pushed
   * once, and a copy from a second push (see wantsCopyOfUpload) would never come.
   */
  keepCopiesFromNow(firstUploads = false): void {
    this.keepCopies = true;
    this.copyFirstUploads = firstUploads;
    void this.planCopies();
  }

  /**
   * A reference for the engine to pull while the build runs (`docker pull`), when the image will be
   * pulled from here after it: an image of the restored cache's last layer chain (see
   * oci/prefetch.ts), served from the entry's blobs. Undefined when the entry has no such chain
   * (no entry, a cache config that does not read, layers that are not gzip or lack their
   * uncompressed digest).
   */
  async prefetchRef(): Promise<string | undefined> {
    this.prefetch ??= this.readPrefetch().then(
      (image) => (this.prefetched = image),
      () => undefined,
    );
    return (await this.prefetch) === undefined ? undefined : `${this.host}/${this.repository}:${PREFETCH_TAG}`;
  }

  /**
   * The build is over: the prefetch's reads of layers BuildKit did not read are refused from now
   * on (the engine's pull of it then fails, having brought the layers the build read). Returns
   * whether such a read was refused, now or before (PREFETCH_GRACE_MS).
   */
  endPrefetch(): boolean {
    this.prefetchEnded = true;
    // The reads still waiting are those of layers nothing wants: each is refused as it wakes.
    const refusing = this.prefetchWaiters.size > 0;
    for (const wake of [...this.prefetchWaiters]) wake();
    return refusing || this.prefetchRefused;
  }

  /**
   * Whether the store was found unreachable for the export during this facade's life: a write call
   * failed, or a read could not reach it (not a read that failed for one blob, say a missing one).
   */
  get storeWentDown(): boolean {
    return this.writerDown !== undefined;
  }

  /** The export, once its manifest arrived complete and the writer committed it. */
  get exported(): ExportedLayout | undefined {
    return this.committed?.layout;
  }

  /**
   * Resolves when no request is being handled: a response cut short reaches BuildKit before the
   * facade has finished with it, so read `events` after this (or `close`).
   */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Stops serving: requests in flight are cut off, store calls aborted, chunked uploads deleted. */
  async close(): Promise<void> {
    if (this.closing.signal.aborted) return;
    this.closing.abort(new Error('the registry facade closed'));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await this.idle();
    await closed;
    await Promise.all([...this.sessions.values()].map((s) => this.dropSession(s)));
    await Promise.all([...this.copies.values()].map((file) => fs.promises.rm(file, { force: true })));
    this.copies.clear();
  }

  // ---------------------------------------------------------------- plumbing

  private track(work: Promise<void>): void {
    this.inflight.add(work);
    void work.finally(() => this.inflight.delete(work));
  }

  private emit(event: FacadeEvent): void {
    this.events.push(event);
    try {
      this.onEvent?.(event);
    } catch {
      // A listener's failure is not the request's.
    }
  }

  /**
   * A store call that failed or stalled (`dog` fired): reported, unless the request itself ended
   * first (the client went away, the facade closed), which is nobody's failure.
   */
  private storeFailed(
    operation: 'open' | 'has' | 'put' | 'commit',
    digest: string | undefined,
    err: unknown,
    dog: Watchdog,
    signal: AbortSignal,
  ): StoreFailure {
    const reason = dog.signal.aborted && dog.signal.reason instanceof StalledError ? dog.signal.reason : toError(err);
    if (!signal.aborted || reason instanceof StalledError) {
      this.emit({ kind: 'store', operation, ...(digest === undefined ? {} : { digest }), message: reason.message });
      // A read that failed for a blob of its own (say, missing) says nothing of the export; one that
      // could not reach the store says the export will not reach it either.
      if (operation !== 'open' || unreachable(reason)) this.writerDown = { message: reason.message, until: Date.now() + this.storeDownMs };
    }
    return new StoreFailure(reason.message);
  }

  /** Throws the export's last store failure while it is recent (see storeDownMs). */
  private assertWriterUp(): void {
    const down = this.writerDown;
    if (down !== undefined && Date.now() < down.until) throw new StoreFailure(`it failed moments ago: ${down.message}`, true);
  }

  private markCorrupt(digest: string, message: string): void {
    this.known.delete(digest);
    if (this.bad.has(digest)) return;
    this.bad.add(digest);
    this.emit({ kind: 'corrupt', digest, message });
    try {
      this.reader?.corrupt?.(digest);
    } catch {
      // The store keeps the bad copy; the facade still never serves it.
    }
  }

  private send(res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body?: Buffer | string): void {
    const length = body === undefined ? 0 : Buffer.byteLength(body);
    res.writeHead(status, { ...API_VERSION, 'Content-Length': length, ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  /** Answers with a distribution error, or cuts the response short if it has begun. */
  private error(
    res: http.ServerResponse,
    code: ErrorCode,
    message: string,
    detail?: unknown,
    headers: http.OutgoingHttpHeaders = {},
  ): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const { status, body } = errorBody(code, message, detail);
    this.send(res, status, { 'Content-Type': 'application/json; charset=utf-8', ...headers }, body);
  }

  /** A watchdog for one store call or stream of this request. */
  private watchdog(what: string, signal: AbortSignal): Watchdog {
    return new Watchdog(this.idleMs, what, signal);
  }

  // ---------------------------------------------------------------- requests

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.stats.requests++;
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort(new Error('the client closed the connection'));
    });
    const signal = AbortSignal.any([gone.signal, this.closing.signal]);
    try {
      if (!basicAuthorized(req.headers.authorization, this.username, this.password)) {
        this.stats.unauthorized++;
        this.error(res, 'UNAUTHORIZED', 'authentication required', undefined, { 'WWW-Authenticate': CHALLENGE });
        return;
      }
      await this.dispatch(parseRoute(req.url ?? '/'), req, res, signal);
    } catch (err) {
      if (err instanceof StoreFailure) this.error(res, err.recent ? 'DENIED' : 'UNKNOWN', `the cache store failed: ${err.message}`);
      else if (signal.aborted) res.destroy();
      else this.error(res, 'UNKNOWN', toError(err).message);
    }
  }

  private async dispatch(route: Route, req: http.IncomingMessage, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    const method = req.method ?? 'GET';
    const read = method === 'GET' || method === 'HEAD';
    if (route.kind === 'ping') {
      if (read) this.send(res, 200, { 'Content-Type': 'application/json; charset=utf-8' }, '{}');
      else this.error(res, 'UNSUPPORTED', `${method} is not supported here`);
      return;
    }
    if (route.kind === 'invalid') {
      this.error(res, route.code, route.message);
      return;
    }
    if (route.kind === 'unknown') {
      this.error(res, 'UNSUPPORTED', 'not an endpoint of this registry');
      return;
    }
    if (route.name !== this.repository) {
      this.error(res, 'NAME_UNKNOWN', `this registry serves only ${this.repository}`);
      return;
    }
    switch (route.kind) {
      case 'manifest':
        if (read) return this.getManifest(route.reference, res, signal);
        if (method === 'PUT') return this.putManifest(route.reference, req, res, signal);
        break;
      case 'blob':
        if (read) return this.getBlob(route.digest, req, res, signal);
        break;
      case 'upload-start':
        if (method === 'POST') return this.startUpload(route, req, res, signal);
        break;
      case 'upload':
        if (method === 'PATCH') return this.patchUpload(route.id, req, res, signal);
        if (method === 'PUT') return this.finishUpload(route, req, res, signal);
        if (method === 'DELETE') return this.cancelUpload(route.id, res);
        break;
    }
    this.error(res, 'UNSUPPORTED', `${method} is not supported here`);
  }

  // ---------------------------------------------------------------- reading

  /** The restored root, read whole and verified once; undefined when there is none or it is corrupt. */
  private restoredRoot(signal: AbortSignal): Promise<Buffer | undefined> {
    const reader = this.reader;
    if (reader === undefined || this.bad.has(reader.root.digest)) return Promise.resolve(undefined);
    if (reader.root.size > this.maxManifest) return Promise.resolve(undefined);
    this.rootBytes ??= this.readWhole(reader.root, signal).catch((err: unknown) => {
      // A store failure may pass: the next request tries again.
      this.rootBytes = undefined;
      throw err;
    });
    return this.rootBytes;
  }

  /** A small blob (a manifest) read whole through the verifier; undefined, and reported, when it fails its digest. */
  private async readWhole(ref: BlobRef, signal: AbortSignal): Promise<Buffer | undefined> {
    const reader = this.reader;
    if (reader === undefined) return undefined;
    const dog = this.watchdog(`reading ${ref.digest} from the store`, signal);
    const chunks: Buffer[] = [];
    const verifier = new BlobVerifier(ref, { onProgress: () => dog.kick() });
    try {
      const source = await dog.guard(reader.open(ref.digest, dog.signal), destroyLate);
      await pipeline(
        source,
        verifier,
        async (data: AsyncIterable<Buffer>) => {
          for await (const chunk of data) chunks.push(chunk);
        },
        { signal: dog.signal },
      );
      return Buffer.concat(chunks);
    } catch (err) {
      if (err instanceof DigestMismatchError) {
        this.markCorrupt(ref.digest, err.message);
        return undefined;
      }
      throw this.storeFailed('open', ref.digest, err, dog, signal);
    } finally {
      dog.stop();
    }
  }

  /** A manifest by tag or digest: the restored root, the committed export, or a child manifest pushed here. */
  private async findManifest(
    reference: string,
    signal: AbortSignal,
  ): Promise<{ bytes: Buffer; mediaType: string; digest: string } | undefined> {
    const root = this.reader?.root;
    if (root !== undefined && (reference === IMPORT_TAG || reference === root.digest)) {
      const bytes = await this.restoredRoot(signal);
      return bytes === undefined ? undefined : { bytes, mediaType: root.mediaType, digest: root.digest };
    }
    const committed = this.committed;
    if (committed !== undefined && (reference === EXPORT_TAG || reference === committed.layout.pushed)) {
      return { ...committed.pushed, digest: committed.layout.pushed };
    }
    const image = this.image;
    if (image !== undefined && (reference === IMAGE_TAG || reference === image.digest)) return image;
    const prefetched = this.prefetched;
    if (prefetched !== undefined && (reference === PREFETCH_TAG || reference === prefetched.digest))
      return { bytes: prefetched.manifest, mediaType: OCI_MANIFEST, digest: prefetched.digest };
    const pushed = this.pushedManifests.get(reference);
    return pushed === undefined ? undefined : { ...pushed, digest: reference };
  }

  private async getManifest(reference: string, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    const found = await this.findManifest(reference, signal);
    if (found === undefined) {
      this.error(res, 'MANIFEST_UNKNOWN', `manifest ${reference} unknown`);
      return;
    }
    this.send(res, 200, { 'Content-Type': found.mediaType, 'Docker-Content-Digest': found.digest }, found.bytes);
    if (res.req.method === 'GET') this.count(found.bytes.length, fromEngine(res.req));
    // The engine began to pull the built image: the prefetch's reads still waiting end soon (see PREFETCH_GRACE_MS).
    if (this.image !== undefined && found.digest === this.image.digest && fromEngine(res.req) && !this.prefetchEnded)
      setTimeout(() => this.endPrefetch(), PREFETCH_GRACE_MS).unref();
  }

  /**
   * Where a blob is served from: the restored entry's blobs through the reader; the blobs of the
   * image pushed here through the writer (the store they were acknowledged or stored in). Nothing
   * else, and never a blob that failed its digest.
   */
  private blobSource(
    digest: string,
  ): { ref: BlobRef; open: (digest: string, signal: AbortSignal) => Promise<Readable>; copy: boolean; copied?: string } | undefined {
    if (this.bad.has(digest)) return undefined;
    const prefetched = this.prefetched;
    if (prefetched !== undefined && digest === prefetched.configDigest) {
      const config = prefetched.config;
      return { ref: { digest, size: config.length }, open: () => Promise.resolve(Readable.from([config])), copy: false };
    }
    const entryRef = this.readerBlobs.get(digest);
    const size = entryRef?.size ?? this.image?.blobs.get(digest);
    if (size === undefined) return undefined;
    const ref = { digest, size };
    const copied = this.copies.get(digest);
    if (copied !== undefined) return { ref, open: () => Promise.resolve(fs.createReadStream(copied)), copy: false, copied };
    const reader = this.reader;
    if (entryRef !== undefined && reader !== undefined) return { ref, open: (d, s) => reader.open(d, s), copy: this.keepCopies };
    const writer = this.writer;
    if (writer?.open === undefined) return undefined;
    return { ref, open: (d, s) => writer.open?.(d, s) ?? Promise.reject(new Error('the store cannot be read')), copy: false };
  }

  private async getBlob(digest: string, req: http.IncomingMessage, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    if (req.method === 'HEAD') {
      // BuildKit asks before each upload of its export: a blob the store has needs none, unless its
      // copy is wanted (copyOfUpload): the push then sends it, and that becomes the copy.
      const size = this.wantsCopyOfUpload(digest) ? undefined : await this.present(digest, signal);
      if (size === undefined) {
        this.error(res, 'BLOB_UNKNOWN', `blob ${digest} unknown`);
        return;
      }
      this.stats.acknowledged++;
      this.send(res, 200, { 'Content-Type': OCTET, 'Content-Length': size, 'Docker-Content-Digest': digest, 'Accept-Ranges': 'bytes' });
      return;
    }
    const engine = fromEngine(req);
    // The engine's prefetch pull takes only the layers the build needs (see readByBuild).
    if (engine && this.prefetched?.layers.has(digest) === true && !(await this.untilBuildReads(digest, req, signal))) {
      this.prefetchRefused = true;
      this.error(res, 'BLOB_UNKNOWN', `blob ${digest} is not one this build read`);
      return;
    }
    // The engine's reads before an image was pushed here are the prefetch's: what fails there is no cache trouble
    // (BuildKit's own read of the blob reports it), and marks nothing.
    const prefetching = engine && this.image === undefined;
    // A read of the blob that is making its copy: this one reads the copy (or the store, if that failed),
    // its socket quiet meanwhile, as above.
    const making = this.copying.get(digest);
    if (making !== undefined) {
      req.socket.setTimeout(0);
      await making.finally(() => req.socket.setTimeout(this.server.timeout));
    }
    const blob = this.blobSource(digest);
    if (blob === undefined) {
      this.error(res, 'BLOB_UNKNOWN', `blob ${digest} unknown`);
      return;
    }
    const { ref, open } = blob;
    const range = parseRange(req.headers.range, ref.size);
    if (range === 'unsatisfiable') {
      this.error(res, 'RANGE_INVALID', 'range not satisfiable', undefined, { 'Content-Range': `bytes */${ref.size}` });
      return;
    }

    const worthCopying = range === undefined && blob.copy && (await this.worthCopying(digest));
    // Another read began its copy while this one asked: it waits for that one after all.
    if (worthCopying && this.copying.has(digest)) return this.getBlob(digest, req, res, signal);
    // The copy is made beside the stream; another read of the blob meanwhile waits for it (see copying).
    const copy = worthCopying ? this.newCopy(ref.size) : undefined;
    let copied = (): void => undefined;
    if (copy !== undefined) this.copying.set(digest, new Promise<void>((resolve) => (copied = resolve)));
    // Only now, so that a prefetch read it wakes finds the copy in the making.
    if (!engine) this.markReadByBuild(digest);
    const dog = this.watchdog(`reading ${digest} from the store`, signal);
    try {
      let source: Readable;
      try {
        source = await dog.guard(open(digest, dog.signal), destroyLate);
      } catch (err) {
        await this.releaseCopy(copy);
        if (prefetching) throw new Error(`the prefetch could not read ${digest}: ${toError(err).message}`);
        throw this.storeFailed('open', digest, err, dog, signal);
      }
      const length = range === undefined ? ref.size : range.end - range.start + 1;
      // Set, not written: until the first byte goes out, a failure can still be a proper 500.
      const headers: Record<string, string | number> = {
        ...API_VERSION,
        'Content-Type': OCTET,
        'Content-Length': length,
        'Docker-Content-Digest': digest,
        'Accept-Ranges': 'bytes',
        ...(range === undefined ? {} : { 'Content-Range': `bytes ${range.start}-${range.end}/${ref.size}` }),
      };
      res.statusCode = range === undefined ? 200 : 206;
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
      const verifier = new BlobVerifier(ref, {
        range,
        onProgress: () => dog.kick(),
        onVerified: () => this.count(length, engine),
      });
      try {
        if (copy === undefined) await pipeline(source, verifier, res, { signal: dog.signal });
        else {
          await pipeline(source, verifier, copy, res, { signal: dog.signal });
          await this.keepCopy(digest, copy);
        }
      } catch (err) {
        await this.releaseCopy(copy);
        if (blob.copied !== undefined) {
          // The copy on disk failed, not the store: it goes, and the next request reads the store.
          await this.dropCopy(digest, blob.copied, ref.size);
          if (res.headersSent || signal.aborted) res.destroy();
          else {
            for (const name of Object.keys(headers)) res.removeHeader(name);
            this.error(res, 'UNKNOWN', `the local copy of ${digest} failed: ${toError(err).message}`);
          }
          return;
        }
        if (prefetching) {
          res.destroy();
          return;
        }
        const failure = err instanceof DigestMismatchError ? undefined : this.storeFailed('open', digest, err, dog, signal);
        if (failure === undefined) this.markCorrupt(digest, (err as Error).message);
        if (res.headersSent || signal.aborted) {
          // Cut short: BuildKit sees an incomplete body, never a wrong one.
          res.destroy();
          return;
        }
        for (const name of Object.keys(headers)) res.removeHeader(name);
        if (failure === undefined) this.error(res, 'BLOB_UNKNOWN', `blob ${digest} does not match its digest in the store`);
        else this.error(res, 'UNKNOWN', `the cache store failed: ${failure.message}`);
      }
    } finally {
      dog.stop();
      if (copy !== undefined) {
        this.copying.delete(digest);
        copied();
      }
    }
  }

  private markReadByBuild(digest: string): void {
    if (this.readByBuild.has(digest)) return;
    this.readByBuild.add(digest);
    for (const wake of [...this.prefetchWaiters]) wake();
  }

  /**
   * Counts a body served whole: to BuildKit, or to the engine's pull (`engine`: its user agent,
   * `docker/…`; once an image was pushed here, every read is the pull of it).
   */
  private count(bytes: number, engine = false): void {
    if (this.image === undefined && !engine) {
      this.stats.served++;
      this.stats.bytesServed += bytes;
    } else {
      this.stats.pulled++;
      this.stats.bytesPulled += bytes;
    }
  }

  /**
   * Whether a blob of the restored entry is worth a copy. A multi-stage build reads the layers of
   * its build stages (a toolchain, dependencies) but ships only its last stage's: copying those
   * would write gigabytes that no pull reads. Every blob when the cache config cannot tell.
   */
  private async worthCopying(digest: string): Promise<boolean> {
    const plan = await this.planCopies();
    return plan === undefined || plan.has(digest);
  }

  private planCopies(): Promise<ReadonlySet<string> | undefined> {
    this.copyPlan ??= this.readCopyPlan().catch(() => undefined);
    return this.copyPlan;
  }

  private async readCopyPlan(): Promise<ReadonlySet<string> | undefined> {
    return finalLayers(await this.readCacheConfig());
  }

  /** The restored entry's cache config, read once; undefined when there is none or it does not read. */
  private readCacheConfig(): Promise<unknown> {
    this.cacheConfig ??= (async () => {
      const root = await this.restoredRoot(this.closing.signal);
      const config = root === undefined || this.reader === undefined ? undefined : cacheConfigOf(this.reader.root, root);
      if (config === undefined || config.size > this.maxManifest) return undefined;
      const bytes = await this.readWhole(config, this.closing.signal);
      return bytes === undefined ? undefined : (JSON.parse(bytes.toString('utf8')) as unknown);
    })().catch(() => undefined);
    return this.cacheConfig;
  }

  /** The image of the restored cache's last layer chain, each layer as the entry's root describes it (see prefetchRef). */
  private async readPrefetch(): Promise<(PrefetchImage & { readonly layers: ReadonlyMap<string, number> }) | undefined> {
    const chain = finalChain(await this.readCacheConfig());
    const reader = this.reader;
    const root = await this.restoredRoot(this.closing.signal);
    if (chain === undefined || reader === undefined || root === undefined) return undefined;
    const described = new Map(children(reader.root, root).map((d) => [d.digest, d]));
    const layers: Descriptor[] = [];
    for (const digest of chain) {
      const layer = described.get(digest);
      if (layer === undefined || !this.readerBlobs.has(digest)) return undefined;
      layers.push(layer);
    }
    const image = prefetchImage(layers, goArch(process.arch));
    return image === undefined ? undefined : { ...image, layers: new Map(chain.map((d, i) => [d, i])) };
  }

  /**
   * For the engine's read of a layer of the prefetch image: resolves true once BuildKit reads the
   * layer or one above it in the chain, or the pushed image has it; false once the prefetch ended
   * (or the request went) without that. Meanwhile the request's socket is quiet, and the server's
   * timeout must not cut it (the engine would retry it later, holding one of its downloads).
   */
  private async untilBuildReads(digest: string, req: http.IncomingMessage, signal: AbortSignal): Promise<boolean> {
    // The new image is built on the layers under one BuildKit read: they are wanted too (a base layer BuildKit took from its registry).
    const layers = this.prefetched?.layers;
    const at = layers?.get(digest) ?? Infinity;
    const wanted = (): boolean => this.image?.blobs.has(digest) === true || [...this.readByBuild].some((d) => (layers?.get(d) ?? -1) >= at);
    if (wanted()) return true;
    req.socket.setTimeout(0);
    try {
      return await new Promise((resolve) => {
        const look = (): void => {
          if (!wanted() && !this.prefetchEnded && !signal.aborted) return;
          this.prefetchWaiters.delete(look);
          signal.removeEventListener('abort', look);
          resolve(wanted());
        };
        this.prefetchWaiters.add(look);
        signal.addEventListener('abort', look);
        look();
      });
    } finally {
      req.socket.setTimeout(this.server.timeout);
    }
  }

  /** A copy to make beside a blob's stream, within the budget; undefined when it would exceed it. */
  private newCopy(size: number): CopyingStream | undefined {
    if (this.copyBytes + size > this.copyBudget) return undefined;
    this.copyBytes += size;
    return new CopyingStream(path.join(this.spoolDir, `dbxc-facade-${randomHex()}.part`), size);
  }

  /** A copy not kept: deleted, and its bytes back in the budget. */
  private async releaseCopy(copy: CopyingStream | undefined): Promise<void> {
    if (copy === undefined) return;
    this.copyBytes -= copy.size;
    await copy.discard();
  }

  /** A kept copy that failed: it goes, and its bytes return to the budget. */
  private async dropCopy(digest: string, file: string, size: number): Promise<void> {
    if (this.copies.get(digest) === file) {
      this.copies.delete(digest);
      this.copyBytes -= size;
    }
    await fs.promises.rm(file, { force: true });
  }

  /** A whole blob served and verified: its copy is served from now on (a copy that failed to write is dropped). */
  private async keepCopy(digest: string, copy: CopyingStream): Promise<void> {
    const file = await copy.finish();
    if (file === undefined || this.closing.signal.aborted || this.copies.has(digest)) {
      await this.releaseCopy(copy);
      return;
    }
    this.copies.set(digest, file);
  }

  /**
   * The size of a blob the store has; undefined when it must be uploaded. With a writer, only the
   * writer's answer counts (or an upload here): the restored entry's list is not enough, since the
   * writer's `has` is what keeps the blob for the save (an upload's lease) and checks it is there.
   */
  private async present(digest: string, signal: AbortSignal): Promise<number | undefined> {
    if (this.bad.has(digest)) return undefined;
    if (this.writer === undefined) return this.readerBlobs.get(digest)?.size;
    const known = this.known.get(digest);
    if (known !== undefined) return known;
    this.assertWriterUp();
    const dog = this.watchdog(`asking the store for ${digest}`, signal);
    try {
      const size = await dog.guard(this.writer.has(digest, dog.signal));
      if (size !== undefined) this.known.set(digest, size);
      return size;
    } catch (err) {
      throw this.storeFailed('has', digest, err, dog, signal);
    } finally {
      dog.stop();
    }
  }

  // ---------------------------------------------------------------- uploads

  private async startUpload(
    route: Extract<Route, { kind: 'upload-start' }>,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    signal: AbortSignal,
  ): Promise<void> {
    if (this.writer === undefined) {
      this.error(res, 'DENIED', 'this cache is read-only');
      return;
    }
    if (route.mount !== undefined) {
      const size = await this.present(route.mount, signal);
      if (size !== undefined) {
        this.stats.acknowledged++;
        this.send(res, 201, { Location: this.blobUrl(route.mount), 'Docker-Content-Digest': route.mount });
        return;
      }
    }
    if (route.digest !== undefined) return this.storeUpload(route.digest, req, undefined, res, signal);
    this.assertWriterUp();
    const session: UploadSession = { id: crypto.randomBytes(16).toString('hex'), size: 0, busy: false };
    this.sessions.set(session.id, session);
    this.send(res, 202, { Location: this.uploadUrl(session.id), Range: '0-0', 'Docker-Upload-UUID': session.id });
  }

  private async patchUpload(id: string, req: http.IncomingMessage, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    const session = this.sessions.get(id);
    if (session === undefined) {
      this.error(res, 'BLOB_UPLOAD_UNKNOWN', 'upload unknown');
      return;
    }
    const from = /^(\d+)-\d+$/.exec(req.headers['content-range'] ?? '')?.[1];
    if (session.busy || (from !== undefined && Number(from) !== session.size)) {
      this.error(res, 'RANGE_INVALID', 'chunk out of order', undefined, { Range: rangeHeader(session.size), 'Docker-Upload-UUID': id });
      return;
    }
    session.busy = true;
    try {
      session.size += await this.spool(session, req, signal);
    } finally {
      session.busy = false;
    }
    this.send(res, 202, { Location: this.uploadUrl(id), Range: rangeHeader(session.size), 'Docker-Upload-UUID': id });
  }

  private async finishUpload(
    route: Extract<Route, { kind: 'upload' }>,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    signal: AbortSignal,
  ): Promise<void> {
    const session = this.sessions.get(route.id);
    if (session === undefined || session.busy) {
      this.error(res, 'BLOB_UPLOAD_UNKNOWN', 'upload unknown');
      return;
    }
    if (route.digest === undefined) {
      this.error(res, 'DIGEST_INVALID', 'the digest parameter is required');
      return;
    }
    this.sessions.delete(route.id);
    await this.storeUpload(route.digest, req, session, res, signal);
  }

  private async cancelUpload(id: string, res: http.ServerResponse): Promise<void> {
    const session = this.sessions.get(id);
    if (session === undefined || session.busy) {
      this.error(res, 'BLOB_UPLOAD_UNKNOWN', 'upload unknown');
      return;
    }
    this.sessions.delete(id);
    await this.dropSession(session);
    this.send(res, 204, {});
  }

  private async dropSession(session: UploadSession): Promise<void> {
    if (session.spool !== undefined) await fs.promises.rm(session.spool, { force: true });
  }

  /** Appends a request body to the session's spool file; returns its bytes. */
  private async spool(session: UploadSession, body: Readable, signal: AbortSignal): Promise<number> {
    session.spool ??= path.join(this.spoolDir, `dbxc-facade-${session.id}`);
    const dog = this.watchdog('receiving an upload', signal);
    let bytes = 0;
    try {
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            bytes += chunk.length;
            dog.kick();
            yield chunk;
          }
        },
        fs.createWriteStream(session.spool, { flags: 'a', mode: 0o600 }),
        { signal: dog.signal },
      );
    } catch (err) {
      // A full disk under the spool is cache trouble like a store's; a client that went away is not.
      throw this.storeFailed('put', undefined, err, dog, signal);
    } finally {
      dog.stop();
    }
    return bytes;
  }

  /**
   * The end of an upload: the blob (what was spooled, then this request's body) goes into the store
   * through the verifier. A blob the store already has is acknowledged and its body discarded. The
   * spool file is gone before the answer.
   */
  private async storeUpload(
    digest: string,
    req: http.IncomingMessage,
    session: UploadSession | undefined,
    res: http.ServerResponse,
    signal: AbortSignal,
  ): Promise<void> {
    const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
    // Only a blob whose size is known up front is streamed straight into the store.
    const spooled = session?.spool !== undefined || (declared === undefined && req.headers['transfer-encoding'] !== undefined);
    const s = session ?? { id: crypto.randomBytes(16).toString('hex'), size: 0, busy: true };
    let outcome: 'stored' | 'present' | 'rejected';
    let size = declared ?? 0;
    try {
      let body: Readable = req;
      if (spooled) {
        s.size += await this.spool(s, req, signal);
        body = fs.createReadStream(s.spool ?? '');
        size = s.size;
      }
      if (this.storing.has(digest) || (await this.present(digest, signal)) !== undefined || this.storing.has(digest)) {
        if (this.wantsCopyOfUpload(digest)) await this.copyOfUpload({ digest, size }, body, signal);
        else await drain(body);
        outcome = 'present';
      } else {
        const put = this.putBlob({ digest, size }, body, signal, this.keepCopies && this.copyFirstUploads);
        const settled = put.then(
          () => undefined,
          () => undefined,
        );
        this.storing.set(digest, settled);
        try {
          outcome = await put;
        } finally {
          if (this.storing.get(digest) === settled) this.storing.delete(digest);
        }
      }
    } finally {
      await this.dropSession(s);
    }
    if (outcome === 'rejected') {
      this.error(res, 'DIGEST_INVALID', `the upload does not match ${digest}`);
      return;
    }
    if (outcome === 'present') this.stats.acknowledged++;
    else {
      this.uploadedHere.add(digest);
      this.stats.uploaded++;
      this.stats.bytesUploaded += size;
    }
    this.send(res, 201, { Location: this.blobUrl(digest), 'Docker-Content-Digest': digest });
  }

  /**
   * Whether the body of a blob uploaded here is wanted as its copy. A layer of the image is pushed
   * twice, by the image and by the cache (mode=max holds every layer the image has); a layer of an
   * earlier stage only by the cache. So the first upload goes into the store, uncopied, and the
   * second push's body (asked for with a 404 to its HEAD, or arriving while the first is stored)
   * becomes the copy: only the image's new layers are written to disk, from BuildKit over loopback.
   */
  private wantsCopyOfUpload(digest: string): boolean {
    if (!this.keepCopies || this.copies.has(digest) || this.bad.has(digest)) return false;
    if (!this.uploadedHere.has(digest) && !this.storing.has(digest)) return false;
    // Beyond the budget no copy is made: asking for the body again would only move it for nothing.
    const size = this.known.get(digest);
    return size === undefined || this.copyBytes + size <= this.copyBudget;
  }

  /** An upload's body, verified, kept as the blob's copy (not stored again); a body that fails only leaves no copy. */
  private async copyOfUpload(ref: BlobRef, body: Readable, signal: AbortSignal): Promise<void> {
    const copy = this.newCopy(ref.size);
    if (copy === undefined) {
      await drain(body);
      return;
    }
    const dog = this.watchdog(`copying ${ref.digest}`, signal);
    // Piped, not pipeline(): that would destroy the request, and with it the socket the answer goes back on.
    const verifier = new BlobVerifier(ref, { onProgress: () => dog.kick() });
    const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
    body.on('error', (err) => verifier.destroy(err));
    verifier.on('error', (err) => copy.destroy(err));
    copy.on('error', (err) => sink.destroy(err));
    body.pipe(verifier).pipe(copy).pipe(sink);
    try {
      await dog.guard(finished(sink));
      await this.keepCopy(ref.digest, copy);
    } catch {
      body.unpipe(verifier);
      verifier.destroy();
      await this.releaseCopy(copy);
      await drain(body);
    } finally {
      dog.stop();
    }
  }

  /**
   * Streams a blob into the store through the verifier. 'rejected' when the bytes are not the
   * blob (nothing is stored); throws a StoreFailure when the store fails or stalls.
   */
  private async putBlob(ref: BlobRef, body: Readable, signal: AbortSignal, copying = false): Promise<'stored' | 'rejected'> {
    const writer = this.writer;
    if (writer === undefined) throw new StoreFailure('this cache is read-only');
    this.assertWriterUp();
    const dog = this.watchdog(`storing ${ref.digest}`, signal);
    const verifier = new BlobVerifier(ref, { onProgress: () => dog.kick() });
    const outcome: { mismatch?: DigestMismatchError; verified: boolean } = { verified: false };
    verifier.on('error', (err) => {
      if (err instanceof DigestMismatchError) outcome.mismatch = err;
    });
    verifier.on('end', () => (outcome.verified = true));
    // Not pipeline(): it would destroy the request, and with it the socket the answer goes back on.
    body.on('error', (err) => verifier.destroy(err));
    body.pipe(verifier);
    const copy = copying ? this.newCopy(ref.size) : undefined;
    if (copy !== undefined) {
      verifier.on('error', (err) => copy.destroy(err));
      verifier.pipe(copy);
    }
    try {
      await dog.guard(writer.put(ref, copy ?? verifier, dog.signal));
    } catch (err) {
      await this.releaseCopy(copy);
      body.unpipe(verifier);
      verifier.destroy();
      body.resume();
      if (outcome.mismatch !== undefined) {
        this.emit({ kind: 'rejected', digest: ref.digest, message: outcome.mismatch.message });
        return 'rejected';
      }
      throw this.storeFailed('put', ref.digest, err, dog, signal);
    } finally {
      dog.stop();
    }
    if (!outcome.verified) {
      // The writer said it was done before the blob was: whatever it kept must not count.
      await this.releaseCopy(copy);
      body.unpipe(verifier);
      verifier.destroy();
      throw this.storeFailed('put', ref.digest, new Error('the store finished before reading the whole blob'), dog, signal);
    }
    this.known.set(ref.digest, ref.size);
    if (copy !== undefined) await this.keepCopy(ref.digest, copy);
    return 'stored';
  }

  // ---------------------------------------------------------------- manifests

  private async readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) return undefined;
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  private async putManifest(reference: string, req: http.IncomingMessage, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    if (this.writer === undefined) {
      this.error(res, 'DENIED', 'this cache is read-only');
      return;
    }
    const byDigest = reference.includes(':');
    if (!byDigest && reference !== EXPORT_TAG && reference !== IMAGE_TAG) {
      this.error(res, 'DENIED', `pushes go to the tags ${EXPORT_TAG} and ${IMAGE_TAG}`);
      return;
    }
    const bytes = await this.readBody(req, this.maxManifest);
    if (bytes === undefined) {
      this.error(res, 'SIZE_INVALID', `a manifest may not exceed ${this.maxManifest} bytes`);
      return;
    }
    let mediaType: string;
    try {
      mediaType = manifestMediaType(req.headers['content-type'], bytes);
    } catch (err) {
      this.error(res, 'MANIFEST_INVALID', toError(err).message);
      return;
    }
    const pushed = sha256Digest(bytes);
    if (byDigest && reference !== pushed) {
      this.error(res, 'DIGEST_INVALID', `the manifest's digest is ${pushed}`);
      return;
    }

    let blobs: BlobRef[];
    try {
      // The manifest may wait for an upload still going into the store (see completeness), which
      // its own watchdog bounds: meanwhile its socket is quiet, and the server's timeout must not cut it.
      req.socket.setTimeout(0);
      try {
        blobs = await this.completeness({ mediaType, digest: pushed, size: bytes.length }, bytes, signal);
      } finally {
        req.socket.setTimeout(this.server.timeout);
      }
    } catch (err) {
      if (err instanceof IncompleteManifest) {
        this.error(res, err.code, err.message, err.detail);
        return;
      }
      throw err;
    }

    if (byDigest) {
      if (
        (await this.present(pushed, signal)) === undefined &&
        (await this.putBlob({ digest: pushed, size: bytes.length }, Readable.from([bytes]), signal)) === 'rejected'
      ) {
        throw new StoreFailure(`${pushed} could not be stored`);
      }
      this.pushedManifests.set(pushed, { bytes, mediaType });
      this.send(res, 201, { Location: this.manifestUrl(pushed), 'Docker-Content-Digest': pushed });
      return;
    }
    if (reference === IMAGE_TAG) {
      // Kept for the engine's pull, never committed: the last image pushed wins.
      this.image = { bytes, mediaType, digest: pushed, blobs: new Map(blobs.map((b) => [b.digest, b.size])) };
      // A prefetch read of a layer the image has (a base layer BuildKit took from its registry) goes on now.
      for (const wake of [...this.prefetchWaiters]) wake();
      this.send(res, 201, { Location: this.manifestUrl(pushed), 'Docker-Content-Digest': pushed });
      return;
    }
    // One commit at a time, and one per facade.
    const turn = this.commitQueue.then(() => this.commit(mediaType, bytes, pushed, blobs, signal));
    this.commitQueue = turn.catch(() => undefined);
    const outcome = await turn;
    if (outcome === 'conflict') {
      this.error(res, 'DENIED', 'this export was already committed with another manifest');
      return;
    }
    this.send(res, 201, { Location: this.manifestUrl(pushed), 'Docker-Content-Digest': pushed });
  }

  /**
   * Every blob a pushed manifest reaches, each checked present in the store with its size; the
   * pushed manifest itself is left out. Throws an IncompleteManifest for the answer.
   */
  private async completeness(root: Descriptor & { mediaType: string }, bytes: Buffer, signal: AbortSignal): Promise<BlobRef[]> {
    let live: Map<string, Descriptor>;
    try {
      live = await reachable({ manifests: [root] }, async (d) => {
        if (d.digest === root.digest) return bytes;
        const found =
          this.pushedManifests.get(d.digest)?.bytes ??
          (d.digest === this.reader?.root.digest ? await this.restoredRoot(signal) : undefined);
        if (found === undefined) throw new Error('not pushed');
        return found;
      });
    } catch (err) {
      throw new IncompleteManifest('MANIFEST_BLOB_UNKNOWN', `the manifest reaches a manifest that was not pushed: ${toError(err).message}`);
    }
    live.delete(root.digest);
    const refs = [...live.values()].map((d) => ({ digest: d.digest, size: d.size }));
    const sizes = await mapLimit(refs, 8, async (ref) => {
      if (this.pushedManifests.has(ref.digest)) return ref.size;
      // A blob whose second upload was discarded is there once the first one ends.
      await this.storing.get(ref.digest);
      return this.present(ref.digest, signal);
    });
    const missing = refs.filter((ref, i) => sizes[i] !== ref.size).map((ref) => ref.digest);
    if (missing.length > 0)
      throw new IncompleteManifest('MANIFEST_BLOB_UNKNOWN', `${missing.length} blob(s) the manifest reaches are not in the store`, {
        digests: missing,
      });
    return refs;
  }

  private async commit(
    mediaType: string,
    bytes: Buffer,
    pushed: string,
    blobs: BlobRef[],
    signal: AbortSignal,
  ): Promise<'committed' | 'conflict'> {
    const writer = this.writer;
    if (writer === undefined) throw new StoreFailure('this cache is read-only');
    if (this.committed !== undefined) return this.committed.layout.pushed === pushed ? 'committed' : 'conflict';
    const stored = canonicalManifest(bytes) ?? bytes;
    const root = { mediaType, digest: sha256Digest(stored), size: stored.length };
    if (
      (await this.present(root.digest, signal)) === undefined &&
      (await this.putBlob(root, Readable.from([stored]), signal)) === 'rejected'
    ) {
      throw new StoreFailure(`${root.digest} could not be stored`);
    }
    const index: Index = { schemaVersion: 2, manifests: [{ ...root, annotations: { 'org.opencontainers.image.ref.name': CACHE_TAG } }] };
    const layout: ExportedLayout = {
      index,
      root,
      blobs: [{ digest: root.digest, size: root.size }, ...blobs.filter((b) => b.digest !== root.digest)],
      pushed,
    };
    this.assertWriterUp();
    const dog = this.watchdog('committing the export', signal);
    try {
      await dog.guard(writer.commit(layout, dog.signal));
    } catch (err) {
      throw this.storeFailed('commit', root.digest, err, dog, signal);
    } finally {
      dog.stop();
    }
    this.committed = { layout, pushed: { bytes, mediaType } };
    this.emit({ kind: 'committed', layout });
    return 'committed';
  }

  private blobUrl(digest: string): string {
    return `/v2/${this.repository}/blobs/${digest}`;
  }

  private manifestUrl(digest: string): string {
    return `/v2/${this.repository}/manifests/${digest}`;
  }

  private uploadUrl(id: string): string {
    return `/v2/${this.repository}/blobs/uploads/${id}`;
  }
}

class IncompleteManifest extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly detail?: unknown,
  ) {
    super(message);
  }
}

/** A stream that arrived after its request gave up on it (see Watchdog.guard). */
const destroyLate = (stream: Readable): void => void stream.destroy();

const randomHex = (): string => crypto.randomBytes(12).toString('hex');

/**
 * Passes a blob's bytes on and writes them to a file as well (keepCopies); a failure to write only
 * loses the copy. `finish` says whether the copy is whole.
 */
class CopyingStream extends Transform {
  private readonly out: fs.WriteStream;
  private failed = false;

  constructor(
    readonly file: string,
    readonly size: number,
  ) {
    super();
    this.out = fs.createWriteStream(file, { flags: 'wx', mode: 0o600 });
    this.out.on('error', () => (this.failed = true));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.failed || this.out.write(chunk)) done(null, chunk);
    else {
      const go = (): void => {
        this.out.off('drain', go).off('error', go);
        done(null, chunk);
      };
      this.out.on('drain', go).on('error', go);
    }
  }

  /** The file, once the copy is flushed and whole; undefined when writing it failed. */
  async finish(): Promise<string | undefined> {
    if (!this.failed)
      await new Promise<void>((resolve) =>
        this.out.end((err?: Error | null) => {
          // end() reports a failed last write before the stream's 'error' event does.
          if (err) this.failed = true;
          resolve();
        }),
      );
    return this.failed || this.out.bytesWritten !== this.size ? undefined : this.file;
  }

  async discard(): Promise<void> {
    this.out.destroy();
    await fs.promises.rm(this.file, { force: true });
  }
}

/**
 * Reads an upload's body to its end, discarding it: the answer must wait for that, since an answer
 * to a body still coming makes the client's write fail ("read/write on closed pipe").
 */
async function drain(body: Readable): Promise<void> {
  body.resume();
  await finished(body).catch(() => undefined);
}

/** Connection-level failures: the store could not be reached, or stopped answering. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);
function unreachable(err: Error): boolean {
  // Not a stall: a read stalls too when BuildKit stops reading what it asked for.
  const code = (err as { code?: unknown }).code;
  return (typeof code === 'string' && UNREACHABLE_CODES.has(code)) || /socket hang up|ECONN(?:REFUSED|RESET)|ETIMEDOUT/.test(err.message);
}

const sha256Digest = (bytes: Buffer): string => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;

/** The upload's Range header: the bytes received so far, `0-0` for none as the registry answers. */
const rangeHeader = (size: number): string => `0-${Math.max(size - 1, 0)}`;
