/**
 * Summary statistics of a token dataset (what `deno task tokens:inspect` prints).
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { TokenDataset } from "./dataset.ts";

/** One entry of {@linkcode TokenSummary.topCodes}. */
export interface CodeCount {
  /** The code. */
  code: number;
  /** How many times it occurs. */
  count: number;
  /** count / all codes. */
  share: number;
}

/** What {@linkcode summarizeTokenDataset} reports. Plain JSON. */
export interface TokenSummary {
  /** The data file. */
  dataPath: string;
  /** Records N. */
  records: number;
  /** Grid side n. */
  gridSide: number;
  /** All codes, N*n*n. */
  codes: number;
  /** Decompressed data bytes. */
  dataBytes: number;
  /** Smallest code (-1 when there are none). */
  minCode: number;
  /** Largest code (-1 when there are none). */
  maxCode: number;
  /** How many codes are >= 255 (stored with the two-byte escape). */
  escapedCodes: number;
  /** How many distinct codes occur. */
  distinctCodes: number;
  /** Shannon entropy of the code histogram, in bits. */
  entropyBits: number;
  /** The most frequent codes, most frequent first (ties: smaller code first). */
  topCodes: CodeCount[];
  /** Label statistics, or `null` without labels. */
  labels: {
    /** Number of labels (= records). */
    count: number;
    /** Number of distinct labels. */
    classes: number;
    /** Smallest label. */
    min: number;
    /** Largest label. */
    max: number;
  } | null;
  /**
   * Hex SHA-256 of all decoded codes in record order, row-major, each a little-endian int32.
   */
  sha256: string;
}

/** Options of {@linkcode summarizeTokenDataset}. */
export interface SummarizeOptions {
  /**
   * How many of the most frequent codes to list.
   * @default {10}
   */
  top?: number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Decode every record once and summarize: code range, histogram (distinct codes, top codes,
 * entropy), labels and a SHA-256 of the decoded codes.
 *
 * @param ds the dataset
 * @param options how many top codes to list
 * @returns the summary
 * @throws {CorruptRecordError} for a bad record (datasets opened with `verify: false`)
 *
 * @example
 * ```ts
 * import { summarizeTokenDataset, TokenDataset } from "@lib/tokens";
 * const ds = TokenDataset.fromBuffers(new Uint8Array([1, 1, 255, 0, 2]), new Float64Array([0, 5]));
 * const s = summarizeTokenDataset(ds); // one 2x2 record: 1, 1, 255, 2
 * console.assert(s.distinctCodes === 3 && s.maxCode === 255 && s.topCodes[0].code === 1);
 * ```
 */
export function summarizeTokenDataset(
  ds: TokenDataset,
  options: SummarizeOptions = {},
): TokenSummary {
  const top = options.top ?? 10;
  const nn = ds.codesPerRecord;
  const counts = new Float64Array(511);
  const hash = createHash("sha256");
  const per = Math.max(1, Math.floor((1 << 20) / Math.max(nn, 1)));
  const buf = new Int32Array(per * nn);
  const bytes = new Uint8Array(buf.buffer);
  for (let start = 0; start < ds.length; start += per) {
    const b = Math.min(per, ds.length - start);
    for (let j = 0; j < b; j++) ds.readRecord(start + j, buf, j * nn);
    const used = b * nn;
    for (let i = 0; i < used; i++) counts[buf[i]]++;
    if (!LITTLE_ENDIAN) {
      const v = new DataView(buf.buffer);
      for (let i = 0; i < used; i++) v.setInt32(4 * i, buf[i], true);
    }
    hash.update(bytes.subarray(0, 4 * used));
  }
  const total = ds.length * nn;
  let minCode = -1, maxCode = -1, distinct = 0, escaped = 0, entropy = 0;
  const present: number[] = [];
  for (let c = 0; c < counts.length; c++) {
    const n = counts[c];
    if (n === 0) continue;
    if (minCode < 0) minCode = c;
    maxCode = c;
    distinct++;
    if (c >= 255) escaped += n;
    const p = n / total;
    entropy -= p * Math.log2(p);
    present.push(c);
  }
  present.sort((a, b) => counts[b] - counts[a] || a - b);
  const topCodes = present.slice(0, top).map((code) => ({
    code,
    count: counts[code],
    share: counts[code] / total,
  }));
  let labels: TokenSummary["labels"] = null;
  if (ds.labels !== null) {
    const l = ds.labels;
    const seen = new Set<number>();
    let min = Infinity, max = -Infinity;
    for (let i = 0; i < l.length; i++) {
      seen.add(l[i]);
      if (l[i] < min) min = l[i];
      if (l[i] > max) max = l[i];
    }
    labels = l.length === 0
      ? { count: 0, classes: 0, min: 0, max: 0 }
      : { count: l.length, classes: seen.size, min, max };
  }
  return {
    dataPath: ds.dataPath,
    records: ds.length,
    gridSide: ds.gridSide,
    codes: total,
    dataBytes: ds.data.length,
    minCode,
    maxCode,
    escapedCodes: escaped,
    distinctCodes: distinct,
    entropyBits: entropy === 0 ? 0 : entropy,
    topCodes,
    labels,
    sha256: hash.digest("hex"),
  };
}
