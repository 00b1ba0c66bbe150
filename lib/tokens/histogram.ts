/**
 * Code frequencies of a token dataset (the full histogram; `summarizeTokenDataset` keeps only
 * the top codes), for plots of codebook usage.
 *
 * @module
 */
import type { TokenDataset } from "./dataset.ts";

/** What {@linkcode codeCounts} returns. */
export interface CodeCounts {
  /** `counts[c]`: occurrences of code c; length = the codebook size (or max code + 1). */
  counts: Float64Array;
  /** Records read. */
  records: number;
  /** All codes counted (records * n * n). */
  total: number;
}

/**
 * Count every code of the first `records` records.
 *
 * @param ds the dataset
 * @param options `records`: how many records from the start (default all); `codebookSize`:
 *   the histogram's length (default the dataset's codebook size, else the largest code + 1)
 * @returns the counts
 * @throws {RangeError} for a record count below 1 or a code >= `codebookSize`
 * @throws {CorruptRecordError} for a bad record
 * @example
 * ```ts
 * import { codeCounts, TokenDataset } from "@lib/tokens";
 * const ds = TokenDataset.fromBuffers(new Uint8Array([1, 1, 2, 0]), new Float64Array([0, 4]));
 * const { counts } = codeCounts(ds);
 * console.assert(counts[1] === 2 && counts.length === 3);
 * ```
 */
export function codeCounts(
  ds: TokenDataset,
  options: { records?: number; codebookSize?: number } = {},
): CodeCounts {
  const n = Math.min(ds.length, options.records ?? ds.length);
  if (!(Number.isInteger(n) && n >= 1)) {
    throw new RangeError(
      `Cannot count the codes of ${options.records} records of "${ds.dataPath}"`,
    );
  }
  const K = options.codebookSize ?? ds.codebookSize ?? 511;
  const counts = new Float64Array(K);
  const buf = new Int32Array(ds.codesPerRecord);
  let maxCode = -1;
  for (let i = 0; i < n; i++) {
    ds.readRecord(i, buf);
    for (let j = 0; j < buf.length; j++) {
      const c = buf[j];
      if (c >= K) {
        throw new RangeError(
          `Cannot count code ${c} of record ${i} of "${ds.dataPath}": the histogram has ${K} bins`,
        );
      }
      counts[c]++;
      if (c > maxCode) maxCode = c;
    }
  }
  const explicit = options.codebookSize !== undefined || ds.codebookSize !== null;
  return {
    counts: explicit ? counts : counts.slice(0, maxCode + 1),
    records: n,
    total: n * ds.codesPerRecord,
  };
}
