import type { Readable } from 'stream';
import type { Descriptor, Index } from '../oci/layout';
import type { BlobRef } from '../store/types';

/**
 * The read side of the registry facade: the entry that the restore picked, as the store holds it.
 * The store engine implements it; the facade serves the root as the import tag's manifest and the
 * blobs on demand, and checks every byte it serves against its digest.
 */
export interface EntryReader {
  /**
   * The cache root: the descriptor that the entry's index.json tags `latest` (an image manifest
   * with `image-manifest=true`, else BuildKit's cache index). Its `mediaType` is the manifest's
   * Content-Type, so it must be set.
   */
  readonly root: Descriptor & { readonly mediaType: string };
  /** Every blob the root reaches, the root itself included. The facade serves these and nothing else. */
  readonly blobs: readonly BlobRef[];
  /**
   * The blob's bytes, from the first, as the store holds them. The facade hashes them as they pass
   * and cuts the response short when they do not match; it never asks for a blob outside `blobs`.
   * The store must keep these blobs (a lease) for as long as the facade runs.
   */
  open(digest: string, signal: AbortSignal): Promise<Readable>;
  /** Hears of a blob whose bytes did not match (the store then drops that copy); may do nothing. */
  corrupt?(digest: string): void;
}

/**
 * The write side: where the export's pushes go. Blobs the store already has are acknowledged
 * without an upload; the new entry is written only by `commit`, once the manifest has arrived and
 * every blob it reaches is present.
 */
export interface EntryWriter {
  /** The size of the blob if the store holds it intact, else undefined (BuildKit then uploads it). */
  has(digest: string, signal: AbortSignal): Promise<number | undefined>;
  /**
   * Stores a blob from `body`. The facade checks the bytes as they pass: a blob that does not match
   * `blob` makes `body` end in an error instead of ending, so nothing that fails its digest can be
   * stored. The store should still check what it wrote (a local store hashes the file it renames
   * into place). Resolves when the blob is in the store for good.
   */
  put(blob: BlobRef, body: Readable, signal: AbortSignal): Promise<void>;
  /**
   * The export is complete: the manifest arrived and every blob it reaches is in the store. Called
   * at most once per facade; this is where the new entry is written, and nothing before it is one.
   * A commit that throws leaves no entry, and BuildKit's push fails (the export is a warning).
   */
  commit(layout: ExportedLayout, signal: AbortSignal): Promise<void>;
  /**
   * A blob this writer acknowledged or stored, from its first byte, as the store holds it: the
   * facade serves the image pushed to it from here, hashing the bytes as they pass. Without it
   * an image pushed to the facade cannot be pulled.
   */
  open?(digest: string, signal: AbortSignal): Promise<Readable>;
}

/** What an export through the facade produced: an OCI layout, as the local exporter would have written it. */
export interface ExportedLayout {
  /** index.json: the root tagged `latest`, as BuildKit's local exporter writes it. */
  readonly index: Index;
  /** The root manifest as stored (see canonicalManifest); its bytes were `put` as a blob before the commit. */
  readonly root: Descriptor & { readonly mediaType: string };
  /** Every blob the root reaches, the root included, each present in the store. */
  readonly blobs: readonly BlobRef[];
  /**
   * The digest of the manifest as BuildKit pushed it, which the facade acknowledged
   * (equal to root.digest unless annotations were removed).
   */
  readonly pushed: string;
}

/** What happened that the task must know about. Requests refused for lack of credentials are only counted (see FacadeStats). */
export type FacadeEvent =
  /** A blob from the store did not match its digest: it was not served, and the facade reports it missing from now on. */
  | { readonly kind: 'corrupt'; readonly digest: string; readonly message: string }
  /** The store failed or stalled in one of the calls: BuildKit got an error for that request. */
  | { readonly kind: 'store'; readonly operation: 'open' | 'has' | 'put' | 'commit'; readonly digest?: string; readonly message: string }
  /** An upload from BuildKit did not match the digest it named: it was refused, nothing was stored. */
  | { readonly kind: 'rejected'; readonly digest: string; readonly message: string }
  /** The export's manifest arrived complete and the writer committed it. */
  | { readonly kind: 'committed'; readonly layout: ExportedLayout };

export interface FacadeStats {
  /** Requests answered, the refused ones included. */
  requests: number;
  /** Requests without the facade's credentials (every client's first request in a scope is one: the Basic challenge). */
  unauthorized: number;
  /** Blob and manifest bodies served whole and verified, and their bytes (a range counts its bytes). */
  served: number;
  bytesServed: number;
  /** Blobs uploaded by BuildKit and stored, and their bytes. */
  uploaded: number;
  bytesUploaded: number;
  /** Blobs BuildKit asked about during the export that the store already had: no upload. */
  acknowledged: number;
  /** Blobs and manifests served whole after an image was pushed (the engine's pull of it), and their bytes; not in `served`. */
  pulled: number;
  bytesPulled: number;
}
