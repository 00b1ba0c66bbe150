/**
 * Test helpers: write token files byte by byte (independently of the writer under test).
 *
 * @module
 */
import { gzip, writeNpy } from "@lib/io";

/** Paths of one raw dataset written by {@linkcode writeRawDataset}. */
export interface RawPaths {
  /** `<dir>/<name>-token.data.bin.gz` */
  data: string;
  /** `<dir>/<name>-token.index.npy.gz` */
  index: string;
  /** `<dir>/<name>-label.txt` */
  labels: string;
}

/**
 * Write a dataset from raw parts: the decompressed stream, the offsets, the label lines.
 * @param dir folder
 * @param name dataset name
 * @param data decompressed byte stream
 * @param offsets the index entries
 * @param labels label lines (no file when left out)
 * @returns the paths
 */
export async function writeRawDataset(
  dir: string,
  name: string,
  data: Uint8Array,
  offsets: number[],
  labels?: number[],
): Promise<RawPaths> {
  const p: RawPaths = {
    data: `${dir}/${name}-token.data.bin.gz`,
    index: `${dir}/${name}-token.index.npy.gz`,
    labels: `${dir}/${name}-label.txt`,
  };
  await Deno.writeFile(p.data, gzip(data));
  await Deno.writeFile(
    p.index,
    gzip(
      writeNpy({
        dtype: "int64",
        shape: [offsets.length],
        data: BigInt64Array.from(offsets, BigInt),
      }),
    ),
  );
  if (labels !== undefined) {
    await Deno.writeTextFile(
      p.labels,
      labels.map((l) => `${l}\n`).join(""),
    );
  }
  return p;
}

/**
 * Encode codes by the format's rule (reference implementation for tests).
 * @param codes the codes
 * @returns the bytes
 */
export function encodeCodes(codes: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c < 255) out.push(c);
    else out.push(255, c - 255);
  }
  return out;
}
