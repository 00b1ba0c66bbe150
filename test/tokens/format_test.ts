import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { gunzip, gzip, readNpy, readSafetensorsFile, toInt32, writeNpy } from "@lib/io";
import { Rng } from "@lib/random";
import {
  CorruptRecordError,
  openTokenDataset,
  parseLabels,
  readLabels,
  TokenDataset,
  TokenFileError,
  tokenIndexPath,
  tokenLabelsPath,
  TokenWriter,
  writeTokenDataset,
} from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";
import { encodeCodes, writeRawDataset } from "./_files.ts";

const DATA = parityPath("tiny-train-token.data.bin.gz");
const INDEX = parityPath("tiny-train-token.index.npy.gz");
const LABELS = parityPath("tiny-train-label.txt");

async function reference() {
  const st = await readSafetensorsFile(parityPath("tokens_decoded.safetensors"));
  const get = (k: string) => st.tensors.get(k)!;
  return {
    ids: toInt32(get("ids")),
    idsShape: get("ids").shape,
    labels: toInt32(get("labels")),
    offsets: Array.from(get("offsets").data as BigInt64Array, Number),
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seitpp-tokens-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function rejects(
  p: Promise<unknown>,
  cls: new (...a: never[]) => Error,
  message: string,
): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.equal((e as Error).constructor, cls, `class of: ${(e as Error).message}`);
    assert.equal((e as Error).message, message);
    return e as Error;
  }
  assert.fail(`expected ${cls.name}: ${message}`);
}

Deno.test("the tiny parity files decode exactly to tokens_decoded.safetensors (ids, labels, offsets)", async () => {
  const ref = await reference();
  assert.deepEqual(ref.idsShape, [50, 32, 32]);
  const ds = await openTokenDataset(DATA, { codebookSize: 391 });
  assert.equal(ds.indexPath, INDEX);
  assert.equal(ds.labelsPath, LABELS);
  assert.equal(ds.length, 50);
  assert.equal(ds.gridSide, 32);
  assert.deepEqual(Array.from(ds.offsets), ref.offsets);
  assert.deepEqual(ds.labels, ref.labels);
  const all = ds.readBatch(Array.from({ length: 50 }, (_, i) => i));
  assert.deepEqual(all, ref.ids);
  for (const i of [0, 17, 49]) {
    assert.deepEqual(ds.readRecord(i), ref.ids.subarray(i * 1024, (i + 1) * 1024));
  }
  // the standalone label reader agrees
  assert.deepEqual(await readLabels(LABELS), ref.labels);
});

Deno.test("readBatch decodes in the requested order into a caller buffer; readBatchTensor leaks nothing", async () => {
  const ref = await reference();
  const ds = await openTokenDataset(DATA, { verify: false });
  const out = new Int32Array(3 * 1024 + 5).fill(-7);
  const got = ds.readBatch([49, 3, 49], out);
  assert.equal(got, out);
  assert.deepEqual(out.subarray(0, 1024), ref.ids.subarray(49 * 1024, 50 * 1024));
  assert.deepEqual(out.subarray(1024, 2048), ref.ids.subarray(3 * 1024, 4 * 1024));
  assert.deepEqual(out.subarray(2048, 3072), ref.ids.subarray(49 * 1024, 50 * 1024));
  assert.deepEqual(Array.from(out.subarray(3072)), [-7, -7, -7, -7, -7]);
  assert.deepEqual(ds.labelsOf([49, 3]), Int32Array.from([ref.labels[49], ref.labels[3]]));
  await initBackend({ backend: "cpu" });
  const before = tf.memory().numTensors;
  for (let r = 0; r < 3; r++) {
    const t = ds.readBatchTensor([5, 6]);
    assert.deepEqual(t.shape, [2, 32, 32]);
    assert.equal(t.dtype, "int32");
    assert.deepEqual(t.dataSync(), ref.ids.subarray(5 * 1024, 7 * 1024));
    t.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  assert.throws(
    () => ds.readRecord(50),
    new RangeError(`Cannot read record 50 of "${DATA}": it holds 50 records`),
  );
  assert.throws(
    () => ds.readRecord(0, new Int32Array(1000)),
    new RangeError("Cannot decode record 0 into 1000 codes at offset 0: it needs 1024"),
  );
});

Deno.test("writing the fixture's codes reproduces its decompressed data, index and labels byte for byte", async () => {
  const ref = await reference();
  await withDir(async (dir) => {
    const path = `${dir}/tiny-train-token.data.bin.gz`;
    const w = await TokenWriter.create(path, { gridSide: 32, codebookSize: 391 });
    // one record at a time for half, a batch for the rest
    for (let i = 0; i < 20; i++) {
      await w.append(ref.ids.subarray(i * 1024, (i + 1) * 1024), ref.labels[i]);
    }
    await w.appendBatch(ref.ids.subarray(20 * 1024), ref.labels.subarray(20));
    const s = await w.close();
    assert.equal(s.records, 50);
    assert.equal(s.dataBytes, 76812);
    assert.equal(s.compressedBytes, (await Deno.stat(path)).size);
    assert.deepEqual(
      gunzip(await Deno.readFile(path)),
      gunzip(await Deno.readFile(DATA)),
    );
    const idx = readNpy(await Deno.readFile(`${dir}/tiny-train-token.index.npy.gz`));
    assert.equal(idx.dtype, "int64");
    assert.deepEqual(idx.shape, [51]);
    assert.deepEqual(Array.from(idx.data as BigInt64Array, Number), ref.offsets);
    assert.equal(
      await Deno.readTextFile(`${dir}/tiny-train-label.txt`),
      await Deno.readTextFile(LABELS),
    );
    // nothing but the three files is left behind
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), [
      "tiny-train-label.txt",
      "tiny-train-token.data.bin.gz",
      "tiny-train-token.index.npy.gz",
    ]);
  });
});

Deno.test("writer round trip with codes at the escape edges (0, 254, 255, 256, 390, 510) and many chunks", async () => {
  await withDir(async (dir) => {
    const rng = new Rng(7);
    const n = 24, nn = n * n, records = 300; // > 1 MiB encoded: several gzip chunks
    const codes = new Int32Array(records * nn);
    for (let i = 0; i < codes.length; i++) codes[i] = rng.int(0, 511);
    codes.set([0, 254, 255, 256, 390, 510], 0);
    const labels = Int32Array.from({ length: records }, () => rng.int(0, 1000));
    const path = `${dir}/rt-token.data.bin.gz`;
    const s = await writeTokenDataset(path, codes, { gridSide: n, labels, level: 1 });
    assert.equal(s.records, records);
    const raw = gunzip(await Deno.readFile(path));
    assert.deepEqual(Array.from(raw.subarray(0, 9)), [0, 254, 255, 0, 255, 1, 255, 135, 255]);
    assert.equal(raw[9], 255);
    assert.deepEqual(raw, Uint8Array.from(encodeCodes(codes)));
    const ds = await openTokenDataset(path);
    assert.equal(ds.gridSide, n);
    assert.deepEqual(ds.readBatch(Array.from({ length: records }, (_, i) => i)), codes);
    assert.deepEqual(ds.labels, labels);
  });
});

Deno.test("an empty dataset round-trips (index [0], no labels file)", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/e-token.data.bin.gz`;
    const s = await writeTokenDataset(path, new Int32Array(0), { gridSide: 4 });
    assert.equal(s.records, 0);
    assert.equal(s.labelsPath, null);
    await assert.rejects(Deno.stat(`${dir}/e-label.txt`), Deno.errors.NotFound);
    const ds = await openTokenDataset(path, { gridSide: 4 });
    assert.equal(ds.length, 0);
    assert.equal(ds.labels, null);
  });
});

Deno.test("the writer refuses bad codes, counts and label mixes with exact messages and stays usable", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/w-token.data.bin.gz`;
    const w = await TokenWriter.create(path, { gridSide: 2, codebookSize: 391 });
    await rejects(
      w.append([1, 2, 391, 3], 0),
      RangeError,
      `Cannot write record 0 to "${path}": code 391 at position 2 is outside 0..390`,
    );
    await rejects(
      w.append([1, 2, 1.5, 3], 0),
      RangeError,
      `Cannot write record 0 to "${path}": code 1.5 at position 2 is outside 0..390`,
    );
    await rejects(
      w.append([1, 2, 3], 0),
      TypeError,
      `Cannot write record 0 to "${path}": expected 4 codes, got 3`,
    );
    await w.append([1, 2, 3, 4], 5);
    await rejects(
      w.append([1, 2, 3, 4]),
      TypeError,
      `Cannot append record 1 to "${path}" without a label: the records before it have labels`,
    );
    await rejects(
      w.appendBatch([1, 2, 3, 4, 5], [1]),
      TypeError,
      `Cannot write a batch of 5 codes to "${path}": not a multiple of 4`,
    );
    await w.append([4, 3, 2, 1], 6);
    await w.close();
    await rejects(
      w.append([1, 2, 3, 4], 1),
      TypeError,
      `Cannot append to "${path}": the writer is closed`,
    );
    const ds = await openTokenDataset(path);
    assert.deepEqual(ds.readBatch([0, 1]), Int32Array.from([1, 2, 3, 4, 4, 3, 2, 1]));
    assert.deepEqual(ds.labels, Int32Array.from([5, 6]));

    const w2 = await TokenWriter.create(`${dir}/v-token.data.bin.gz`, { gridSide: 1 });
    await w2.append([9]);
    await rejects(
      w2.append([9], 1),
      TypeError,
      `Cannot append record 1 to "${dir}/v-token.data.bin.gz" with a label: the records before it have none`,
    );
    await w2.abort();
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.ok(!left.some((n) => n.startsWith("v-")), `abort left ${left}`);
  });
});

Deno.test("a truncated gzip data file is a TokenFileError naming the file", async () => {
  await withDir(async (dir) => {
    const bytes = await Deno.readFile(DATA);
    const path = `${dir}/cut-token.data.bin.gz`;
    await Deno.writeFile(path, bytes.subarray(0, bytes.length >> 1));
    await rejects(
      openTokenDataset(path, { indexPath: INDEX, labelsPath: LABELS }),
      TokenFileError,
      `Cannot gunzip "${path}": unexpected end of file`,
    );
  });
});

Deno.test("a record decoding to the wrong number of codes is a CorruptRecordError naming it", async () => {
  await withDir(async (dir) => {
    const rec = (k: number) => encodeCodes(Array.from({ length: k }, (_, i) => (i * 37) % 391));
    const r0 = rec(16), r1 = rec(15), r2 = rec(17);
    const a = r0.length, b = a + r1.length;
    // record 1 is short
    let p = await writeRawDataset(dir, "short", Uint8Array.from([...r0, ...r1]), [0, a, b]);
    const e = await rejects(
      openTokenDataset(p.data),
      CorruptRecordError,
      `Cannot decode record 1 of "${p.data}": expected 16 codes, got 15`,
    );
    assert.equal((e as CorruptRecordError).record, 1);
    assert.equal((e as CorruptRecordError).file, p.data);
    // record 1 is long
    p = await writeRawDataset(dir, "long", Uint8Array.from([...r0, ...r2]), [0, a, a + r2.length]);
    await rejects(
      openTokenDataset(p.data),
      CorruptRecordError,
      `Cannot decode record 1 of "${p.data}": expected 16 codes, got 17`,
    );
    // the same, found on read when opened without the up-front check
    const ds = await openTokenDataset(p.data, { verify: false });
    assert.deepEqual(
      ds.readRecord(0),
      Int32Array.from(Array.from({ length: 16 }, (_, i) => (i * 37) % 391)),
    );
    assert.throws(() => ds.readRecord(1), CorruptRecordError);
    // a given grid side that record 0 does not match: its length is refused from the index
    p = await writeRawDataset(dir, "side", Uint8Array.from(r0), [0, a]);
    await rejects(
      openTokenDataset(p.data, { gridSide: 3 }),
      CorruptRecordError,
      `Cannot decode record 0 of "${p.index}": the index gives it ${a} bytes, but a 3x3 grid takes 9..18 bytes`,
    );
    // record 0 not a square
    p = await writeRawDataset(dir, "sq", Uint8Array.from(r1), [0, r1.length]);
    await rejects(
      openTokenDataset(p.data),
      CorruptRecordError,
      `Cannot decode record 0 of "${p.data}": its 15 codes do not form a square grid`,
    );
    // a record ending in a dangling escape
    p = await writeRawDataset(dir, "esc", Uint8Array.from([...r0, 1, 2, 3, 255]), [0, a, a + 4]);
    await rejects(
      openTokenDataset(p.data),
      CorruptRecordError,
      `Cannot decode record 1 of "${p.data}": its last byte is a 255 escape with no code byte after it`,
    );
  });
});

Deno.test("a code >= the codebook size is a CorruptRecordError naming record, row and column", async () => {
  const ref = await reference();
  const k = 300;
  const first = ref.ids.findIndex((c) => c >= k);
  const rec = Math.floor(first / 1024), pos = first % 1024;
  await rejects(
    openTokenDataset(DATA, { codebookSize: k }),
    CorruptRecordError,
    `Cannot decode record ${rec} of "${DATA}": code ${ref.ids[first]} at row ${
      Math.floor(pos / 32)
    }, column ${pos % 32} is outside the codebook of ${k} codes`,
  );
  // the same on read with verify: false
  const ds = await openTokenDataset(DATA, { codebookSize: k, verify: false });
  assert.throws(() => ds.readRecord(rec), CorruptRecordError);
});

Deno.test("index offsets out of order, past the end, short of the end or not starting at 0 are refused", async () => {
  const ref = await reference();
  const raw = gunzip(await Deno.readFile(DATA));
  await withDir(async (dir) => {
    const write = (name: string, offsets: number[]) =>
      writeRawDataset(dir, name, raw, offsets, Array.from(ref.labels));
    // out of order: record 5 ends before it starts
    const o1 = ref.offsets.slice();
    [o1[5], o1[6]] = [o1[6], o1[5]];
    let p = await write("order", o1);
    await rejects(
      openTokenDataset(p.data),
      CorruptRecordError,
      `Cannot decode record 5 of "${p.index}": its end offset ${o1[6]} is before its start offset ${
        o1[5]
      }`,
    );
    // past the end: the last record ends after the data
    const o2 = ref.offsets.slice();
    o2[50] += 100;
    p = await write("past", o2);
    await rejects(
      openTokenDataset(p.data),
      CorruptRecordError,
      `Cannot decode record 49 of "${p.data}": index "${p.index}" puts its end at byte 76912, past the end of the 76812 decompressed bytes`,
    );
    // short of the end: data runs on after the last offset (decompression stops there)
    const o3 = ref.offsets.slice();
    o3[50] -= 2;
    p = await write("short", o3);
    await rejects(
      openTokenDataset(p.data),
      TokenFileError,
      `Cannot read token data "${p.data}": it decompresses to more than 76810 bytes, but index "${p.index}" ends at byte 76810`,
    );
    // the first offset is not 0
    const o4 = ref.offsets.slice();
    o4[0] = 1;
    p = await write("first", o4);
    await rejects(
      openTokenDataset(p.data),
      TokenFileError,
      `Cannot read index "${p.index}": the first offset is 1, expected 0`,
    );
    // an index giving one record far more bytes than a grid can take is refused before allocating
    const o5 = ref.offsets.slice();
    o5[50] = 2 ** 40;
    p = await write("huge", o5);
    await rejects(
      openTokenDataset(p.data),
      CorruptRecordError,
      `Cannot decode record 49 of "${p.index}": the index gives it ${
        2 ** 40 - o5[49]
      } bytes, but a grid of side at most 256 (maxGridSide) takes at most 131072 bytes`,
    );
    // records within the grid bound that together exceed what the gzip file can hold
    const o6 = Array.from({ length: 2001 }, (_, i) => i * 131072);
    p = await write("many", o6);
    const gz = (await Deno.stat(p.data)).size;
    await rejects(
      openTokenDataset(p.data),
      TokenFileError,
      `Cannot read index "${p.index}": its last offset ${2000 * 131072} exceeds the ${
        1032 * gz + 4096
      } bytes that the ${gz}-byte "${p.data}" can decompress to`,
    );
    // a float index
    await Deno.writeFile(
      p.index,
      gzip(writeNpy({ dtype: "float64", shape: [2], data: new Float64Array([0, 1]) })),
    );
    await rejects(
      openTokenDataset(p.data),
      TokenFileError,
      `Cannot read index "${p.index}": expected integer offsets, got float64`,
    );
    // a corrupt .npy inside the gzip
    await Deno.writeFile(p.index, gzip(new TextEncoder().encode("not an npy file")));
    await rejects(
      openTokenDataset(p.data),
      TokenFileError,
      `Cannot read .npy "${p.index}": missing the \\x93NUMPY magic`,
    );
  });
});

Deno.test("a label count other than the record count is a TokenFileError naming both files", async () => {
  const ref = await reference();
  await withDir(async (dir) => {
    const labels = `${dir}/l.txt`;
    await Deno.writeTextFile(
      labels,
      Array.from(ref.labels.subarray(0, 49), (l) => `${l}\n`).join(""),
    );
    await rejects(
      openTokenDataset(DATA, { labelsPath: labels }),
      TokenFileError,
      `Cannot pair labels "${labels}" with "${DATA}": 49 labels for 50 records`,
    );
    await Deno.writeTextFile(labels, "1\n2\nthree\n");
    await rejects(
      openTokenDataset(DATA, { labelsPath: labels }),
      TokenFileError,
      `Cannot read labels "${labels}": line 3 is not an integer: "three"`,
    );
    // labelsPath null: no labels even though the sibling exists
    const ds = await openTokenDataset(DATA, { labelsPath: null });
    assert.equal(ds.labels, null);
    assert.throws(() => ds.labelsOf([0]), TypeError);
  });
});

Deno.test("labels parse like int(line.strip()) and refuse empty, non-integer or negative lines", () => {
  assert.deepEqual(parseLabels(" 3\r\n0\n+7"), Int32Array.from([3, 0, 7]));
  assert.throws(
    () => parseLabels("3\n-1\n", "x.txt"),
    new TokenFileError(
      "x.txt",
      'Cannot read labels "x.txt": line 2 holds -1; a label is a class index, 0 or more',
    ),
  );
  assert.deepEqual(parseLabels(""), new Int32Array(0));
  assert.throws(
    () => parseLabels("1\n\n2\n", "x.txt"),
    new TokenFileError("x.txt", 'Cannot read labels "x.txt": line 2 is empty'),
  );
  assert.throws(
    () => parseLabels("1\n2.5\n", "x.txt"),
    (e: Error) =>
      e instanceof TokenFileError &&
      e.message === 'Cannot read labels "x.txt": line 2 is not an integer: "2.5"',
  );
  assert.throws(
    () => parseLabels("9999999999\n", "x.txt"),
    (e: Error) =>
      e.message === 'Cannot read labels "x.txt": line 1 holds 9999999999, outside int32',
  );
});

Deno.test("index and label paths follow the release naming", () => {
  assert.equal(
    tokenIndexPath("/a/data.bin/x-token.data.bin.gz"),
    "/a/data.bin/x-token.index.npy.gz",
  );
  assert.equal(
    tokenLabelsPath("/a/imagenet1k-val-token.data.bin.gz"),
    "/a/imagenet1k-val-label.txt",
  );
  assert.equal(tokenLabelsPath("/a/x.bin.gz"), null);
  assert.throws(
    () => tokenIndexPath("/a/x.gz"),
    new TypeError(
      'Cannot derive the index file of "/a/x.gz": its name holds no "data.bin"; pass the index path',
    ),
  );
});

Deno.test("TokenDataset.fromBuffers validates like the file reader", () => {
  const data = Uint8Array.from([1, 2, 3, 4, 255, 0, 5, 6, 7]);
  const ds = TokenDataset.fromBuffers(data, new Float64Array([0, 4, 9]), { codebookSize: 300 });
  assert.deepEqual(ds.readRecord(1), Int32Array.from([255, 5, 6, 7]));
  assert.throws(
    () => TokenDataset.fromBuffers(data, new Float64Array([0, 4, 9]), { codebookSize: 200 }),
    new CorruptRecordError(
      "<data>",
      1,
      "code 255 at row 0, column 0 is outside the codebook of 200 codes",
    ),
  );
  assert.throws(
    () =>
      TokenDataset.fromBuffers(data, new Float64Array([0, 4, 9]), { labels: new Int32Array(3) }),
    (e: Error) =>
      e instanceof TokenFileError &&
      e.message === 'Cannot pair labels "<labels>" with "<data>": 3 labels for 2 records',
  );
  assert.throws(
    () => TokenDataset.fromBuffers(data, new Float64Array([0, 4, 9]), { gridSide: 0 }),
    new RangeError("Cannot use grid side 0: expected an integer in 1..46340"),
  );
});
