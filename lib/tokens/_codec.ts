/**
 * The byte codec of the official SeiT token format (internal): a code c < 255 is the byte
 * c, a code c >= 255 is the two bytes `255, c - 255`. Each record is decoded on its own.
 *
 * @module
 */

/** The escape byte. */
export const ESCAPE = 255;

/** The largest code the format can store (`255, 255`). */
export const MAX_STORABLE_CODE = 510;

/** Returned by the scanners for a record whose last byte is a dangling escape. */
export const DANGLING = -1;

/** Mutable result slot of {@linkcode scanRecord}: the largest code seen. */
export interface ScanState {
  /** Largest code of the last scanned record (-1 for an empty record). */
  max: number;
}

/**
 * Count the codes of one encoded record and find its largest code.
 * @param data decompressed stream
 * @param start first byte of the record
 * @param end one past its last byte
 * @param state receives the largest code
 * @returns the number of codes, or {@linkcode DANGLING}
 */
export function scanRecord(data: Uint8Array, start: number, end: number, state: ScanState): number {
  let count = 0;
  let max = -1;
  let p = start;
  while (p < end) {
    let c = data[p++];
    if (c === ESCAPE) {
      if (p >= end) {
        state.max = max;
        return DANGLING;
      }
      c = ESCAPE + data[p++];
    }
    if (c > max) max = c;
    count++;
  }
  state.max = max;
  return count;
}

/**
 * Decode one record into `out[outOffset ..]`, writing at most `capacity` codes.
 * @param data decompressed stream
 * @param start first byte of the record
 * @param end one past its last byte
 * @param out destination
 * @param outOffset where the first code goes
 * @param capacity the most codes to write
 * @returns the record's code count (may exceed `capacity`: the rest is counted, not
 *   written), or {@linkcode DANGLING}
 */
export function decodeRecord(
  data: Uint8Array,
  start: number,
  end: number,
  out: Int32Array,
  outOffset: number,
  capacity: number,
): number {
  const limit = outOffset + capacity;
  let j = outOffset;
  let p = start;
  while (p < end && j < limit) {
    let c = data[p++];
    if (c === ESCAPE) {
      if (p >= end) return DANGLING;
      c = ESCAPE + data[p++];
    }
    out[j++] = c;
  }
  const written = j - outOffset;
  if (p >= end) return written;
  const rest = scanRecord(data, p, end, { max: 0 });
  return rest === DANGLING ? DANGLING : written + rest;
}

/**
 * Encode codes (already validated to 0..510) at `out[pos ..]`.
 * @param codes the codes
 * @param from first code to encode
 * @param count how many
 * @param out destination with room for up to `2 * count` bytes
 * @param pos where the first byte goes
 * @returns the position after the last written byte
 */
export function encodeRecord(
  codes: ArrayLike<number>,
  from: number,
  count: number,
  out: Uint8Array,
  pos: number,
): number {
  const end = from + count;
  for (let i = from; i < end; i++) {
    const c = codes[i];
    if (c < ESCAPE) {
      out[pos++] = c;
    } else {
      out[pos++] = ESCAPE;
      out[pos++] = c - ESCAPE;
    }
  }
  return pos;
}

/**
 * Find the first code outside `0..maxCode` (or not an integer).
 * @param codes the codes
 * @param from first index to check
 * @param count how many to check
 * @param maxCode the largest valid code
 * @returns the offending index, or -1 when all are valid
 */
export function findInvalidCode(
  codes: ArrayLike<number>,
  from: number,
  count: number,
  maxCode: number,
): number {
  const end = from + count;
  for (let i = from; i < end; i++) {
    const c = codes[i];
    if (!(c >= 0 && c <= maxCode) || (c | 0) !== c) return i;
  }
  return -1;
}
