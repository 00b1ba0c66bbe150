import assert from "node:assert/strict";
import { gzip, readIdx, readIdxFile, readIdxImagesAndLabels, writeIdx } from "@lib/io";
import {
  SAMPLE_IMAGES,
  SAMPLE_LABELS,
  TEST_LABELS,
  TRAIN_LABELS,
} from "../_support/fashion_mnist.ts";

Deno.test("readIdxImagesAndLabels reads the gzipped Fashion-MNIST sample (first 500 test images)", async () => {
  const { images, labels } = await readIdxImagesAndLabels(SAMPLE_IMAGES, SAMPLE_LABELS);
  assert.equal(images.dtype, "uint8");
  assert.deepEqual(images.shape, [500, 28, 28]);
  assert.equal(images.data.length, 500 * 28 * 28);
  assert.equal(labels.dtype, "uint8");
  assert.deepEqual(labels.shape, [500]);
  // the sample's labels are the first 500 of the full test labels, which hold the 10 classes
  // 1000 times each
  const all = await readIdxFile(TEST_LABELS);
  assert.deepEqual(all.shape, [10000]);
  assert.deepEqual(labels.data, (all.data as Uint8Array).subarray(0, 500));
  const counts = new Array(10).fill(0);
  for (const l of all.data as Uint8Array) counts[l]++;
  assert.deepEqual(counts, new Array(10).fill(1000));
  // the first test image is an ankle boot (class 9), with dark borders and some bright pixels
  assert.equal(labels.data[0], 9);
  const first = (images.data as Uint8Array).subarray(0, 784);
  assert.equal(first[0], 0);
  assert.ok(Math.max(...first) > 200);
});

Deno.test("writeIdx -> readIdx round-trips every idx dtype, plain and gzipped", () => {
  const cases = [
    { dtype: "uint8" as const, shape: [2, 3], data: new Uint8Array([0, 1, 2, 253, 254, 255]) },
    { dtype: "int8" as const, shape: [3], data: new Int8Array([-128, 0, 127]) },
    { dtype: "int16" as const, shape: [2], data: new Int16Array([-300, 258]) },
    { dtype: "int32" as const, shape: [1, 2], data: new Int32Array([-70000, 2 ** 31 - 1]) },
    { dtype: "float32" as const, shape: [2], data: new Float32Array([1.5, -0.1]) },
    { dtype: "float64" as const, shape: [], data: new Float64Array([Math.PI]) },
  ];
  for (const c of cases) {
    for (const bytes of [writeIdx(c), gzip(writeIdx(c))]) {
      const r = readIdx(bytes);
      assert.equal(r.dtype, c.dtype);
      assert.deepEqual(r.shape, c.shape);
      assert.deepEqual(Array.from(r.data as ArrayLike<number>), Array.from(c.data));
    }
  }
  // big-endian on disk: int16 258 is 01 02
  const b = writeIdx(cases[2]);
  assert.deepEqual(Array.from(b.subarray(0, 12)), [0, 0, 0x0b, 1, 0, 0, 0, 2, 0xfe, 0xd4, 1, 2]);
});

Deno.test("readIdx: wrong magic is a SyntaxError naming the file", () => {
  assert.throws(() => readIdx(new Uint8Array([0x50, 0x4b, 3, 4, 0, 0]), { source: "x.idx" }), {
    name: "SyntaxError",
    message: 'Cannot read idx "x.idx": wrong magic 50 4b 03 04 (expected 00 00 <type> <ndim>)',
  });
  assert.throws(() => readIdx(new Uint8Array([0, 0, 7, 1]), { source: "t.idx" }), {
    name: "SyntaxError",
    message: 'Cannot read idx "t.idx": unknown data type 0x07',
  });
});

Deno.test("readIdx: a header claiming more data than the file holds is refused", () => {
  // claims 4e9 x 4e9 elements: refused before allocating anything
  const b = new Uint8Array([0, 0, 0x0d, 2, 0xee, 0x6b, 0x28, 0, 0xee, 0x6b, 0x28, 0, 1, 2]);
  assert.throws(() => readIdx(b, { source: "big.idx" }), {
    name: "SyntaxError",
    message:
      'Cannot read idx "big.idx": data holds 2 bytes, shape [4000000000,4000000000] of float32 needs 64000000000000000000',
  });
  assert.throws(() => readIdx(new Uint8Array([0, 0, 8, 3, 0, 0]), { source: "h.idx" }), {
    name: "SyntaxError",
    message: 'Cannot read idx "h.idx": header of 3 dimensions runs past the end of the 6-byte file',
  });
});

Deno.test("readIdxFile: a truncated gzip file is a SyntaxError naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const z = gzip(writeIdx({ dtype: "uint8", shape: [100], data: new Uint8Array(100) }));
    const path = `${dir}/cut.idx.gz`;
    await Deno.writeFile(path, z.subarray(0, z.length - 10));
    await assert.rejects(() => readIdxFile(path), {
      name: "SyntaxError",
      message: `Cannot gunzip "${path}": unexpected end of file`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readIdxImagesAndLabels: mismatched counts are a RangeError naming both files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const img = `${dir}/img.idx`, lab = `${dir}/lab.idx.gz`;
    await Deno.writeFile(
      img,
      writeIdx({ dtype: "uint8", shape: [3, 2, 2], data: new Uint8Array(12) }),
    );
    await Deno.writeFile(
      lab,
      gzip(writeIdx({ dtype: "uint8", shape: [2], data: new Uint8Array(2) })),
    );
    await assert.rejects(() => readIdxImagesAndLabels(img, lab), {
      name: "RangeError",
      message: `Cannot pair "${img}" (3 images) with "${lab}" (2 labels): counts differ`,
    });
    // real files, crossed: 500 test images with the 60000 train labels
    await assert.rejects(() => readIdxImagesAndLabels(SAMPLE_IMAGES, TRAIN_LABELS), {
      name: "RangeError",
      message: `Cannot pair "${SAMPLE_IMAGES}" (500 images) with ` +
        `"${TRAIN_LABELS}" (60000 labels): counts differ`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
