import { formatBytes, formatSeconds } from './task/agent';
import type { HitKind, SaveOutcome } from './store/types';

/** What the build's summary tab shows. Filled by the main step, completed by the post-job step. */
export interface SummaryData {
  readonly backend: string;
  readonly image?: string;
  /** The driver the job built with, and why: `docker (auto), because …`. */
  readonly driver?: string;
  readonly key?: string;
  readonly hit?: HitKind;
  readonly restored?: { readonly key: string; readonly scope: string; readonly created: string };
  readonly bytesRestored?: number;
  readonly bytesDownloaded?: number;
  /** `direct` or `folder`, and why, for a store's cache. */
  readonly transport?: string;
  /** What went through the registry facade (the direct transport). */
  readonly direct?: {
    /** Bytes served to BuildKit, in whole blobs verified. */
    readonly bytesServed: number;
    readonly blobsServed: number;
    /** Bytes BuildKit uploaded into the store, in blobs. */
    readonly bytesUploaded: number;
    readonly blobsUploaded: number;
    /** Blobs of the export the store already had: no upload. */
    readonly acknowledged: number;
    /** Bytes the engine pulled of the image pushed to the facade, in blobs (instead of --load). */
    readonly bytesPulled?: number;
    readonly blobsPulled?: number;
  };
  readonly steps?: { readonly cached: number; readonly total: number };
  readonly digest?: string;
  readonly saved?: {
    readonly status: 'saved' | 'unchanged' | 'skipped' | 'failed';
    readonly bytes?: number;
    readonly blobs?: number;
    readonly reason?: string;
  };
  readonly store?: { readonly bytes: number; readonly blobs: number; readonly entries: number };
  /** Phase name and milliseconds, in the order they ran. */
  readonly phases: readonly (readonly [string, number])[];
}

const HIT_TEXT: Record<HitKind, string> = { true: 'exact (`true`)', inexact: 'restore key (`inexact`)', false: 'none (`false`)' };

/** Text for a markdown table cell: no line breaks, no pipes, no backticks that could end a code span. */
const cell = (text: string): string => text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
const code = (text: string): string => `\`${cell(text).replace(/`/g, "'")}\``;

export function renderSummary(s: SummaryData): string {
  const rows: [string, string][] = [['Cache backend', code(s.backend)]];
  if (s.image !== undefined) rows.push(['Image', code(s.image)]);
  if (s.driver !== undefined) rows.push(['Builder driver', cell(s.driver)]);
  if (s.key !== undefined) rows.push(['Key', code(s.key)]);
  if (s.hit !== undefined) rows.push(['Cache hit', HIT_TEXT[s.hit]]);
  if (s.restored !== undefined)
    rows.push(['Restored entry', `${code(s.restored.key)} from ${code(s.restored.scope)}, saved ${cell(s.restored.created)}`]);
  if (s.bytesRestored !== undefined) rows.push(['Bytes restored', formatBytes(s.bytesRestored)]);
  if (s.transport !== undefined) rows.push(['Cache transport', cell(s.transport)]);
  if (s.bytesDownloaded !== undefined) rows.push(['Bytes downloaded', formatBytes(s.bytesDownloaded)]);
  if (s.direct !== undefined) {
    const d = s.direct;
    rows.push(['Served to BuildKit', `${formatBytes(d.bytesServed)} in ${d.blobsServed} blobs`]);
    rows.push([
      'Uploaded by BuildKit',
      `${formatBytes(d.bytesUploaded)} in ${d.blobsUploaded} blobs; ${d.acknowledged} blobs the store had`,
    ]);
    if (d.blobsPulled !== undefined && d.blobsPulled > 0)
      rows.push(['Pulled by the engine', `${formatBytes(d.bytesPulled ?? 0)} in ${d.blobsPulled} blobs (the image, instead of --load)`]);
  }
  if (s.saved !== undefined) {
    const saved = s.saved;
    const text =
      saved.status === 'saved'
        ? `${formatBytes(saved.bytes ?? 0)} in ${saved.blobs ?? 0} new blobs`
        : saved.status === 'unchanged'
          ? '0 B: the cache did not change; its last use was recorded'
          : `nothing (${cell(saved.reason ?? saved.status)})`;
    rows.push(['Bytes saved', text]);
  }
  if (s.steps !== undefined) rows.push(['Steps cached', `${s.steps.cached} of ${s.steps.total}`]);
  if (s.digest !== undefined) rows.push(['Digest', code(s.digest)]);
  if (s.store !== undefined)
    rows.push(['Store size', `${formatBytes(s.store.bytes)} in ${s.store.blobs} blobs, ${s.store.entries} entries`]);

  const out = ['### Docker buildx cache', '', '| | |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)];
  if (s.phases.length > 0) {
    out.push('', '| Phase | Time |', '|---|---:|', ...s.phases.map(([name, ms]) => `| ${cell(name)} | ${formatSeconds(ms)} |`));
  }
  return out.join('\n') + '\n';
}

/** What a save did, for the summary. */
export function summaryOfSave(saved: SaveOutcome): Partial<SummaryData> {
  if (saved.result === undefined)
    return { saved: { status: saved.skipped !== undefined ? 'skipped' : 'failed', reason: saved.skipped ?? 'see the warning in the log' } };
  return { saved: { status: saved.result.status, bytes: saved.result.newBytes, blobs: saved.result.newBlobs }, store: saved.stats };
}
