import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { writeIdx, writePngFile } from "@lib/io";
import { Rng } from "@lib/random";
import {
  encodeImages,
  imageBatch,
  loadImages,
  reconstructionMetrics,
  resolveTokenizerConfig,
  VqTokenizer,
} from "@lib/tokenizer";

function gray(h: number, w: number, v: number) {
  return { dtype: "uint8" as const, shape: [h, w, 1], data: new Uint8Array(h * w).fill(v) };
}

Deno.test("loadImages reads a folder of PNGs sorted by name: gray -> [N,H,W], RGB -> [N,3,H,W]", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writePngFile(`${dir}/b.png`, gray(28, 28, 20));
    await writePngFile(`${dir}/a.png`, gray(28, 28, 10));
    await Deno.writeTextFile(`${dir}/notes.txt`, "not an image");
    const g = await loadImages(dir);
    assert.deepEqual(g.images.shape, [2, 28, 28]);
    assert.equal(g.images.data[0], 10);
    assert.equal(g.images.data[784], 20);
    assert.equal(g.names(1), `${dir}/b.png`);
    const rgbDir = `${dir}/rgb`;
    await Deno.mkdir(rgbDir);
    const rgb = new Uint8Array(4 * 4 * 3);
    for (let p = 0; p < 16; p++) rgb.set([1, 2, 3], p * 3);
    await writePngFile(`${rgbDir}/x.png`, { dtype: "uint8", shape: [4, 4, 3], data: rgb });
    const c = await loadImages(rgbDir);
    assert.deepEqual(c.images.shape, [1, 3, 4, 4]);
    assert.deepEqual([c.images.data[0], c.images.data[16], c.images.data[32]], [1, 2, 3]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadImages names the file and index of an unreadable PNG or one of another size", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writePngFile(`${dir}/a.png`, gray(28, 28, 0));
    await Deno.writeFile(`${dir}/b.png`, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await assert.rejects(loadImages(dir), {
      name: "SyntaxError",
      message: new RegExp(`^Cannot read image 1 of "${dir}": Cannot decode PNG "${dir}/b.png"`),
    });
    await writePngFile(`${dir}/b.png`, gray(30, 28, 0));
    await assert.rejects(loadImages(dir), {
      name: "TypeError",
      message:
        `Cannot stack image 1 "${dir}/b.png": 30x28, expected 28x28 as image 0 "${dir}/a.png"`,
    });
    await Deno.remove(`${dir}/b.png`);
    await Deno.remove(`${dir}/a.png`);
    await assert.rejects(loadImages(dir), { name: "TypeError", message: /no \.png files/ });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadImages refuses an idx file with a wrong magic or that holds no uint8 images", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = writeIdx({ dtype: "uint8", shape: [2, 28, 28], data: new Uint8Array(2 * 784) });
    bad[0] = 0x50;
    await Deno.writeFile(`${dir}/bad-magic`, bad);
    await assert.rejects(loadImages(`${dir}/bad-magic`), {
      name: "SyntaxError",
      message:
        `Cannot read idx "${dir}/bad-magic": wrong magic 50 00 08 03 (expected 00 00 <type> <ndim>)`,
    });
    await Deno.writeFile(
      `${dir}/labels`,
      writeIdx({ dtype: "uint8", shape: [3], data: new Uint8Array(3) }),
    );
    await assert.rejects(loadImages(`${dir}/labels`), {
      name: "TypeError",
      message: /Cannot use idx ".*labels" as images: uint8 \[3\]/,
    });
    await assert.rejects(loadImages(`${dir}/missing`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bulk encode/compare refuse images of another size or count, naming the source", async () => {
  await initBackend({ backend: "cpu" });
  const tok = VqTokenizer.create(
    resolveTokenizerConfig({ widths: [4, 8, 8], codebookSize: 8, codeDim: 4 }),
    new Rng(0),
  );
  const big = { dtype: "uint8" as const, shape: [2, 32, 32], data: new Uint8Array(2 * 1024) };
  assert.throws(() => encodeImages(tok, big, { source: "big.idx" }), {
    name: "TypeError",
    message:
      'Cannot tokenize "big.idx": its images are 1x32x32 (CxHxW), the tokenizer takes 1x28x28',
  });
  const ok = { dtype: "uint8" as const, shape: [3, 28, 28], data: new Uint8Array(3 * 784) };
  const codes = encodeImages(tok, ok, { batchSize: 2 });
  assert.equal(codes.length, 3 * 64);
  assert.throws(
    () => reconstructionMetrics(tok.decoder, codes.subarray(0, 128), ok, { source: "x.idx" }),
    { name: "TypeError", message: 'Cannot compare 2 decoded records with 3 images of "x.idx"' },
  );
  const rng = new Rng(1);
  const noisy = Uint8Array.from({ length: 3 * 784 }, () => rng.int(0, 256));
  const m = reconstructionMetrics(tok.decoder, codes, { ...ok, data: noisy });
  assert.ok(m.psnr > 0 && m.psnr < 30 && m.count === 3);
  assert.throws(() => imageBatch(ok, [3]), RangeError);
  const t = imageBatch(ok, [2, 0]);
  assert.deepEqual(t.shape, [2, 28, 28]);
  assert.equal(t.dtype, "int32");
  tf.dispose(t);
  tok.dispose();
});
