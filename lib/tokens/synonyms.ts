/**
 * Synonym dictionaries for the SeiT synonym-replacement augmentation: for each code, the
 * other codes whose codebook embeddings are most similar (cosine), most similar first.
 * File format (the release's `synonyms.json`): `{"0": [346, 156, ...], "1": [...], ...}`.
 *
 * @module
 */
import { readFileChecked, writeFileAtomic } from "../io/mod.ts";
import type { Codebook } from "./codebook.ts";

/** The largest dictionary {@linkcode parseSynonyms} accepts (codes 0..2^20-1). */
export const MAX_SYNONYM_CODES = 1 << 20;

/** A synonym dictionary: `lists[c]` holds code c's synonyms, most similar first. */
export interface Synonyms {
  /** Number of codes K the dictionary covers (codes and keys are all < K). */
  size: number;
  /** One list per code 0..K-1 (empty for a code the file has no entry for). */
  lists: Int32Array[];
}

/** Options of {@linkcode buildSynonyms}. */
export interface BuildSynonymsOptions {
  /**
   * Synonyms per code. The official transform uses the first 5; the fixture dictionary
   * (and so this default) holds 8.
   * @default {8}
   */
  k?: number;
  /**
   * Whether a code may be its own synonym. The fixture never lists a code as its own synonym.
   * @default {false}
   */
  includeSelf?: boolean;
}

/**
 * Build a synonym dictionary from a codebook: rows are L2-normalized (`x / max(|x|, 1e-12)`,
 * as torch's `F.normalize`; a zero row is similar to nothing), similarities are their dot
 * products computed in float64, and each code gets the k others of highest similarity,
 * ties broken by the smaller code.
 *
 * @param codebook `[K, d]` float32
 * @param options k and whether to include the code itself
 * @returns the dictionary (every list has exactly k codes)
 * @throws {RangeError} for k outside 1..K-1 (1..K with `includeSelf`)
 *
 * @example
 * ```ts
 * import { buildSynonyms } from "@lib/tokens";
 * // codes 0 and 2 point the same way, 1 is orthogonal
 * const cb = { dtype: "float32" as const, shape: [3, 2], data: new Float32Array([1, 0, 0, 1, 2, 0.1]) };
 * console.assert(buildSynonyms(cb, { k: 1 }).lists[0][0] === 2);
 * ```
 */
export function buildSynonyms(codebook: Codebook, options: BuildSynonymsOptions = {}): Synonyms {
  const [size, d] = codebook.shape;
  const includeSelf = options.includeSelf ?? false;
  const k = options.k ?? 8;
  const maxK = includeSelf ? size : size - 1;
  if (!(Number.isInteger(k) && k >= 1 && k <= maxK)) {
    throw new RangeError(
      `Cannot build ${k} synonyms per code from ${size} codes: expected 1..${maxK}`,
    );
  }
  const x = new Float64Array(size * d);
  for (let c = 0; c < size; c++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += codebook.data[c * d + j] ** 2;
    const norm = Math.max(Math.sqrt(ss), 1e-12);
    for (let j = 0; j < d; j++) x[c * d + j] = codebook.data[c * d + j] / norm;
  }
  const sims = new Float64Array(size);
  const order: number[] = [];
  const lists: Int32Array[] = new Array(size);
  for (let c = 0; c < size; c++) {
    for (let o = 0; o < size; o++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += x[c * d + j] * x[o * d + j];
      sims[o] = s;
    }
    order.length = 0;
    for (let o = 0; o < size; o++) if (includeSelf || o !== c) order.push(o);
    order.sort((a, b) => sims[b] - sims[a] || a - b);
    lists[c] = Int32Array.from(order.slice(0, k));
  }
  return { size, lists };
}

/**
 * Serialize a dictionary as JSON exactly as Python's `json.dumps` does (keys in code
 * order, `", "` and `": "` separators, no trailing newline), the layout of the release
 * file. Codes without an entry are left out.
 *
 * @param syn the dictionary
 * @returns the JSON text
 *
 * @example
 * ```ts
 * import { formatSynonyms } from "@lib/tokens";
 * const text = formatSynonyms({ size: 2, lists: [new Int32Array([1]), new Int32Array([0])] });
 * console.assert(text === '{"0": [1], "1": [0]}');
 * ```
 */
export function formatSynonyms(syn: Synonyms): string {
  const parts: string[] = [];
  for (let c = 0; c < syn.lists.length; c++) {
    const list = syn.lists[c];
    if (list.length === 0) continue;
    parts.push(`"${c}": [${Array.from(list).join(", ")}]`);
  }
  return `{${parts.join(", ")}}`;
}

/** Options of {@linkcode parseSynonyms} and {@linkcode readSynonyms}. */
export interface SynonymsReadOptions {
  /** The codebook size K: every key and listed code must be < K. When left out, K = largest code + 1. */
  codebookSize?: number;
}

/**
 * Parse a synonym dictionary.
 *
 * @param text the JSON text
 * @param source the file name used in error messages
 * @param options the codebook size to check against
 * @returns the dictionary (with `size` = K)
 * @throws {SyntaxError} for invalid JSON, a key that is not a code, or a value that is not
 *   a list of non-negative integers, e.g. `Cannot read synonyms "s.json": key "x" is not a code`
 * @throws {RangeError} for a key or code >= K, e.g.
 *   `Cannot read synonyms "s.json": code 400 in the list of code 12 is outside the codebook of 391 codes`
 */
export function parseSynonyms(
  text: string,
  source = "<text>",
  options: SynonymsReadOptions = {},
): Synonyms {
  const bad = (what: string) => new SyntaxError(`Cannot read synonyms "${source}": ${what}`);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw bad(`not valid JSON (${(e as Error).message})`);
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw bad("expected a JSON object of code lists");
  }
  const entries: [number, Int32Array][] = [];
  let maxCode = -1;
  for (const [key, value] of Object.entries(obj)) {
    if (!/^(0|[1-9]\d{0,8})$/.test(key)) throw bad(`key ${JSON.stringify(key)} is not a code`);
    const code = Number(key);
    if (
      !Array.isArray(value) ||
      value.some((v) => !Number.isSafeInteger(v) || v < 0 || v > 2147483647)
    ) {
      throw bad(`the value of code ${code} is not a list of codes (integers 0..2^31-1)`);
    }
    const list = Int32Array.from(value as number[]);
    maxCode = Math.max(maxCode, code);
    for (const v of list) if (v > maxCode) maxCode = v;
    entries.push([code, list]);
  }
  const k = options.codebookSize;
  if (k !== undefined) {
    if (!(Number.isSafeInteger(k) && k >= 1)) {
      throw new RangeError(`Cannot check synonyms against codebook size ${k}`);
    }
    for (const [code, list] of entries) {
      if (code >= k) {
        throw new RangeError(
          `Cannot read synonyms "${source}": key ${code} is outside the codebook of ${k} codes`,
        );
      }
      const i = list.findIndex((v) => v >= k);
      if (i >= 0) {
        throw new RangeError(
          `Cannot read synonyms "${source}": code ${
            list[i]
          } in the list of code ${code} is outside the codebook of ${k} codes`,
        );
      }
    }
  }
  const size = k ?? maxCode + 1;
  if (size > MAX_SYNONYM_CODES) {
    throw new RangeError(
      `Cannot read synonyms "${source}": code ${maxCode} is beyond ${MAX_SYNONYM_CODES} codes`,
    );
  }
  const lists: Int32Array[] = Array.from({ length: size }, () => new Int32Array(0));
  for (const [code, list] of entries) lists[code] = list;
  return { size, lists };
}

/**
 * Read a synonym dictionary file.
 *
 * @param path the `synonyms.json` file
 * @param options the codebook size to check against
 * @returns the dictionary
 * @throws {Deno.errors.NotFound} when the file does not exist
 * @throws {TypeError} when it is a directory
 * @throws {SyntaxError | RangeError} as {@linkcode parseSynonyms}, or for a file that is
 *   not UTF-8
 */
export async function readSynonyms(
  path: string,
  options: SynonymsReadOptions = {},
): Promise<Synonyms> {
  const bytes = await readFileChecked(path, { what: "synonyms" });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new SyntaxError(`Cannot read synonyms "${path}": not UTF-8 text`);
  }
  return parseSynonyms(text, path, options);
}

/**
 * Write a synonym dictionary file atomically, in the release layout ({@linkcode formatSynonyms}).
 *
 * @param path the file
 * @param syn the dictionary
 */
export async function writeSynonyms(path: string, syn: Synonyms): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(formatSynonyms(syn)));
}

/**
 * The first k synonyms of every code as one dense matrix, for the transforms.
 *
 * @param syn the dictionary
 * @param k synonyms per code (the official transform: 5)
 * @returns `[K, k]` int32, row-major
 * @throws {RangeError} when some code has fewer than k synonyms
 *
 * @example
 * ```ts
 * import { synonymMatrix } from "@lib/tokens";
 * const m = synonymMatrix({ size: 2, lists: [new Int32Array([1, 0]), new Int32Array([0, 1])] }, 1);
 * console.assert(m.join() === "1,0");
 * ```
 */
export function synonymMatrix(syn: Synonyms, k: number): Int32Array {
  if (!(Number.isInteger(k) && k >= 1)) throw new RangeError(`Cannot take ${k} synonyms per code`);
  const out = new Int32Array(syn.size * k);
  for (let c = 0; c < syn.size; c++) {
    const list = syn.lists[c];
    if (list.length < k) {
      throw new RangeError(
        `Cannot take ${k} synonyms of code ${c}: the dictionary lists ${list.length}`,
      );
    }
    out.set(list.subarray(0, k), c * k);
  }
  return out;
}
