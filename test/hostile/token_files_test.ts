/**
 * Hostile token datasets (index, data and label files) through `tokens:inspect` and the
 * dataset reader: gzip bombs, records the grid cannot hold, out-of-range labels,
 * directories where files should be.
 */
import assert from "node:assert/strict";
import { gzip, writeNpy } from "@lib/io";
import { openTokenDataset, TokenFileError } from "@lib/tokens";
import { openData } from "../../tasks/_train_cli.ts";
import { encodeCodes, type RawPaths, writeRawDataset } from "../tokens/_files.ts";
import { assertRefused, runBounded, withTempDir } from "./_run.ts";

const inspect = (...args: string[]) =>
  runBounded(["run", "-A", "tasks/tokens_inspect.ts", ...args]);
const parse = (...args: string[]) => runBounded(["run", "-A", "test/hostile/_parse.ts", ...args]);

/** 50 valid 4x4 records with labels 0..9. */
async function dataset(dir: string, name = "t"): Promise<RawPaths & { raw: Uint8Array }> {
  const bytes: number[] = [];
  const offsets = [0];
  for (let r = 0; r < 50; r++) {
    bytes.push(...encodeCodes(Array.from({ length: 16 }, (_, i) => (r * 7 + i * 31) % 391)));
    offsets.push(bytes.length);
  }
  const raw = Uint8Array.from(bytes);
  const labels = Array.from({ length: 50 }, (_, i) => i % 10);
  return { ...(await writeRawDataset(dir, name, raw, offsets, labels)), raw };
}

/** A multi-member gzip: `head`, then `members` copies of 64 MiB of zeros (~64 KB each). */
function gzipBomb(head: Uint8Array, members: number): Uint8Array {
  const zero = gzip(new Uint8Array(64 * 2 ** 20), 9);
  const first = gzip(head);
  const out = new Uint8Array(first.length + members * zero.length);
  out.set(first, 0);
  for (let i = 0; i < members; i++) out.set(zero, first.length + i * zero.length);
  return out;
}

function offsetsNpy(offsets: number[]): Uint8Array {
  return writeNpy({
    dtype: "int64",
    shape: [offsets.length],
    data: BigInt64Array.from(offsets, BigInt),
  });
}

Deno.test("a 3 MB gzip bomb as the token index stops after the 51 entries its header declares", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir);
    const offsets = [0];
    for (let r = 0; r < 50; r++) offsets.push(Math.round(((r + 1) * p.raw.length) / 50));
    const bomb = gzipBomb(offsetsNpy(offsets), 48); // 3 GiB of zeros after the array
    assert.ok(bomb.length > 2_500_000 && bomb.length < 4_000_000, `${bomb.length} bytes`);
    await Deno.writeFile(p.index, bomb);
    const r = await inspect(p.data);
    assertRefused(r, {
      code: 1,
      message: new RegExp(
        `^tokens:inspect: Cannot read \\.npy ".*t-token\\.index\\.npy\\.gz": it decompresses past the ${
          offsetsNpy(offsets).length
        } bytes its header declares \\(shape \\[51\\] of int64\\)$`,
      ),
    });
  });
});

Deno.test("a gzip bomb as the token data stops at the index's last offset", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir);
    await Deno.writeFile(p.data, gzipBomb(p.raw, 48));
    const r = await inspect(p.data);
    assertRefused(r, {
      code: 1,
      message: new RegExp(
        `^tokens:inspect: Cannot read token data ".*t-token\\.data\\.bin\\.gz": it decompresses to more than ${p.raw.length} bytes, but index ".*" ends at byte ${p.raw.length}$`,
      ),
    });
  });
});

Deno.test("an index declaring one 4 GiB record is refused by the grid bound before allocating", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir);
    await Deno.writeFile(p.index, gzip(offsetsNpy([0, 2 ** 32])));
    await Deno.writeTextFile(p.labels, "3\n");
    let r = await inspect(p.data);
    assertRefused(r, {
      code: 1,
      message:
        /^tokens:inspect: Cannot decode record 0 of ".*t-token\.index\.npy\.gz": the index gives it 4294967296 bytes, but a grid of side at most 256 \(maxGridSide\) takes at most 131072 bytes$/,
    });
    // with the grid side given: 16..32 bytes
    r = await inspect(p.data, "--grid-side", "4");
    assertRefused(r, {
      code: 1,
      message:
        /^tokens:inspect: Cannot decode record 0 of ".*": the index gives it 4294967296 bytes, but a 4x4 grid takes 16\.\.32 bytes$/,
    });
    // a grid side past the bound is refused as an argument
    r = await inspect(p.data, "--grid-side", "100000");
    assertRefused(r, { code: 1, message: /grid side 100000: expected an integer in 1\.\.46340/ });
  });
});

Deno.test("labels -1 and 57 (of 10 classes) are found when the data opens, naming file and line", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir);
    const lines = Array.from({ length: 50 }, (_, i) => i % 10);
    lines[6] = -1;
    await Deno.writeTextFile(p.labels, lines.join("\n") + "\n");
    let r = await inspect(p.data);
    assertRefused(r, {
      code: 1,
      message:
        /^tokens:inspect: Cannot read labels ".*t-label\.txt": line 7 holds -1; a label is a class index, 0 or more$/,
    });
    lines[6] = 6;
    lines[41] = 57;
    await Deno.writeTextFile(p.labels, lines.join("\n") + "\n");
    r = await parse("tokens", p.data, "--classes", "10");
    assertRefused(r, {
      code: 1,
      message:
        /^TokenFileError: Cannot use labels ".*t-label\.txt": line 42 holds 57, outside the 10 classes 0\.\.9$/,
    });
    r = await inspect(p.data, "--classes", "10");
    assertRefused(r, {
      code: 1,
      message:
        /^tokens:inspect: Cannot use labels ".*t-label\.txt": line 42 holds 57, outside the 10 classes 0\.\.9$/,
    });
    // the training tasks open their data through openData, which checks the model's classes
    await assert.rejects(() => openData(p.data, 391, 10), {
      name: "TokenFileError",
      message: `Cannot use labels "${p.labels}": line 42 holds 57, outside the 10 classes 0..9`,
    });
    const ds = await openData(p.data, 391, 58);
    assert.equal(ds.labels![41], 57);
    // without a number of classes, 57 is a label like any other
    assert.equal((await openTokenDataset(p.data)).labels![41], 57);
  });
});

Deno.test("a directory where the index, label or data file should be: one line naming it", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir);
    await Deno.mkdir(`${dir}/d`);
    let r = await inspect(p.data, "--index", `${dir}/d`);
    assertRefused(r, {
      code: 1,
      message: /^tokens:inspect: Cannot read index ".*\/d": it is a directory, not a file$/,
    });
    r = await inspect(p.data, "--labels", `${dir}/d`);
    assertRefused(r, {
      code: 1,
      message: /^tokens:inspect: Cannot read labels ".*\/d": it is a directory, not a file$/,
    });
    // the release's sibling label file is a folder
    await Deno.remove(p.labels);
    await Deno.mkdir(p.labels);
    r = await inspect(p.data);
    assertRefused(r, {
      code: 1,
      message: /^tokens:inspect: Cannot read labels ".*t-label\.txt": it is a directory/,
    });
    await Deno.remove(p.labels);
    // the data file is a folder (its index is found by name)
    await Deno.mkdir(`${dir}/x-token.data.bin.gz`);
    await Deno.copyFile(p.index, `${dir}/x-token.index.npy.gz`);
    r = await inspect(`${dir}/x-token.data.bin.gz`);
    assertRefused(r, {
      code: 1,
      message:
        /^tokens:inspect: Cannot read token data ".*x-token\.data\.bin\.gz": it is a directory, not a file$/,
    });
  });
});

Deno.test("the dataset reader's errors are TokenFileErrors callers can catch", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir);
    await Deno.writeFile(p.index, gzip(offsetsNpy([0, 2 ** 32])));
    await assert.rejects(() => openTokenDataset(p.data, { labelsPath: null }), TokenFileError);
  });
});

Deno.test("finetune on labels of another label set (57 of 10 classes): one line naming file and line, no run folder", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir, "ft");
    const lines = Array.from({ length: 50 }, (_, i) => i % 10);
    lines[41] = 57;
    await Deno.writeTextFile(p.labels, lines.join("\n") + "\n");
    const r = await runBounded([
      "run",
      "-A",
      "tasks/finetune.ts",
      "--backend=cpu",
      "--init=null",
      `--data=${p.data}`,
      `--out=${dir}/runs`,
    ]);
    assertRefused(r, {
      code: 1,
      ignore: /^finetune: config /,
      message:
        /^error: TokenFileError: Cannot use labels ".*ft-label\.txt": line 42 holds 57, outside the 10 classes 0\.\.9$/,
    });
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), [
      "ft-label.txt",
      "ft-token.data.bin.gz",
      "ft-token.index.npy.gz",
    ]);
  });
});

Deno.test("the parsers' error classes: TokenFileError for a bomb index, CorruptRecordError for a 4 GiB record, TypeError for a folder", async () => {
  await withTempDir(async (dir) => {
    const p = await dataset(dir);
    const offsets = [0];
    for (let r = 0; r < 50; r++) offsets.push(Math.round(((r + 1) * p.raw.length) / 50));
    await Deno.writeFile(p.index, gzipBomb(offsetsNpy(offsets), 16));
    assertRefused(await parse("tokens", p.data), {
      code: 1,
      message: /^TokenFileError: Cannot read \.npy ".*": it decompresses past the \d+ bytes/,
    });
    await Deno.writeFile(p.index, gzip(offsetsNpy([0, 2 ** 32])));
    assertRefused(await parse("tokens", p.data), {
      code: 1,
      message: /^CorruptRecordError: Cannot decode record 0 of ".*t-token\.index\.npy\.gz": /,
    });
    await Deno.remove(p.index);
    await Deno.mkdir(p.index);
    assertRefused(await parse("tokens", p.data), {
      code: 1,
      message: /^TypeError: Cannot read index ".*": it is a directory, not a file$/,
    });
  });
});
