/**
 * A bounded zip reader for the archives `torch.save` writes: the central directory is
 * trusted for nothing it cannot prove. Every entry must lie inside the file, stored entries
 * must hold exactly their declared size, and a deflated entry is inflated with its declared
 * size as a hard limit: inflation stops as soon as the output passes it (a lying entry is
 * an error, never a hang or a truncated tensor). Zip64 sizes and offsets are read.
 *
 * @module
 */
import { inflateRawSync } from "node:zlib";
import { checkReadSize, maxReadBytes } from "./limits.ts";

/** Options of {@linkcode readZip}. */
export interface ZipReadOptions {
  /** The file name used in error messages. @default {"<bytes>"} */
  source?: string;
  /** Which entries to extract (by name); the others are only listed. @default {all} */
  filter?: (name: string) => boolean;
  /** The cap on all extracted entries' bytes together. @default {maxReadBytes()} */
  maxBytes?: number;
}

/** deflate expands at most ~1032x. */
const MAX_DEFLATE_RATIO = 1032;

interface Entry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

/**
 * Read the entries of a zip archive.
 *
 * @param bytes the archive's bytes
 * @param options source name, which entries to extract, the cap
 * @returns the extracted entries' bytes by name, in directory order (stored entries are
 *   views into `bytes`)
 * @throws {SyntaxError} for a malformed archive, an entry outside the file, an unsupported
 *   compression, or an entry that inflates to more or fewer bytes than it declares, e.g.
 *   `Cannot read zip "m.pth": entry "archive/data/0" inflates past its declared 1000 bytes`
 * @throws {RangeError} when the extracted entries declare more bytes than the cap
 *
 * @example
 * ```ts
 * import { readZip } from "@lib/io";
 * import { zipSync } from "fflate";
 * const z = zipSync({ "a/b": new Uint8Array([1, 2, 3]) });
 * console.assert(readZip(z).get("a/b")![2] === 3);
 * ```
 */
export function readZip(bytes: Uint8Array, options: ZipReadOptions = {}): Map<string, Uint8Array> {
  const source = options.source ?? "<bytes>";
  const bad = (what: string) => new SyntaxError(`Cannot read zip "${source}": ${what}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (p: number) => view.getUint16(p, true);
  const u32 = (p: number) => view.getUint32(p, true);
  const u64 = (p: number) => Number(view.getBigUint64(p, true));
  // end of central directory: the last signature within the final 64 KiB + 22 bytes
  let eocd = -1;
  for (let p = bytes.length - 22; p >= Math.max(0, bytes.length - 22 - 65535); p--) {
    if (u32(p) === 0x06054b50) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) throw bad("no end-of-central-directory record");
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(loc) !== 0x07064b50) throw bad("zip64 locator is missing");
    const z = u64(loc + 8);
    if (z + 56 > bytes.length || u32(z) !== 0x06064b50) throw bad("zip64 directory is missing");
    count = u64(z + 32);
    cdSize = u64(z + 40);
    cdOffset = u64(z + 48);
  }
  if (cdOffset + cdSize > bytes.length) {
    throw bad(`central directory [${cdOffset}, ${cdOffset + cdSize}) runs past the file`);
  }
  if (count > cdSize / 46) throw bad(`${count} entries cannot fit a ${cdSize}-byte directory`);
  const entries: Entry[] = [];
  let claimed = 0;
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdOffset + cdSize || u32(p) !== 0x02014b50) {
      throw bad(`central directory record ${i} is malformed`);
    }
    const method = u16(p + 10);
    let compressedSize = u32(p + 20), size = u32(p + 24);
    const nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32);
    let localOffset = u32(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdOffset + cdSize) throw bad(`central directory record ${i} runs past it`);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // zip64 extended information: the 0xffffffff fields, in this order
    for (let x = p + 46 + nameLen; x + 4 <= p + 46 + nameLen + extraLen;) {
      const id = u16(x), len = u16(x + 2);
      if (id === 1) {
        let q = x + 4;
        const take = () => {
          if (q + 8 > x + 4 + len) throw bad(`entry "${name}" has a short zip64 field`);
          const v = u64(q);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localOffset === 0xffffffff) localOffset = take();
      }
      x += 4 + len;
    }
    // entries must not overlap (a forged directory could point every entry at the same data)
    claimed += compressedSize;
    if (claimed > bytes.length) {
      throw bad(`zip entries claim more than the ${bytes.length}-byte file holds`);
    }
    entries.push({ name, method, compressedSize, size, localOffset });
    p = end;
  }
  const cap = maxReadBytes(options.maxBytes);
  const out = new Map<string, Uint8Array>();
  let total = 0;
  for (const e of entries) {
    if (options.filter !== undefined && !options.filter(e.name)) continue;
    if (out.has(e.name)) throw bad(`entry "${e.name}" appears twice`);
    const h = e.localOffset;
    if (h + 30 > bytes.length || u32(h) !== 0x04034b50) {
      throw bad(`entry "${e.name}" has no local header at byte ${h}`);
    }
    const start = h + 30 + u16(h + 26) + u16(h + 28);
    const stop = start + e.compressedSize;
    if (stop > bytes.length) {
      throw bad(
        `entry "${e.name}" data [${start}, ${stop}) runs past the ${bytes.length}-byte file`,
      );
    }
    total += e.size;
    checkReadSize(`zip "${source}" (entry "${e.name}")`, total, cap);
    const raw = bytes.subarray(start, stop);
    if (e.method === 0) {
      if (e.size !== e.compressedSize) {
        throw bad(
          `stored entry "${e.name}" declares ${e.size} bytes but holds ${e.compressedSize}`,
        );
      }
      out.set(e.name, raw);
    } else if (e.method === 8) {
      if (e.size > MAX_DEFLATE_RATIO * e.compressedSize + 1024) {
        throw bad(`entry "${e.name}" claims ${e.size} bytes from ${e.compressedSize} compressed`);
      }
      let data: Uint8Array;
      try {
        // node stops inflating as soon as the output passes maxOutputLength
        const b = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
        data = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      } catch (err) {
        if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
          throw bad(`entry "${e.name}" inflates past its declared ${e.size} bytes`);
        }
        throw bad(`entry "${e.name}" does not inflate (${(err as Error).message})`);
      }
      if (data.length !== e.size) {
        throw bad(`entry "${e.name}" inflates to ${data.length} bytes, not its declared ${e.size}`);
      }
      out.set(e.name, data);
    } else {
      throw bad(`entry "${e.name}" uses unsupported compression ${e.method}`);
    }
  }
  return out;
}
