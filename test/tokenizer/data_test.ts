/**
 * The committed default dataset (data/fmnist8, data/fmnist16): complete, consistent with
 * Fashion-MNIST's labels, decodable to recognisable pixels, and small. Pixels and labels come from
 * the shipped sample (test/fixtures/fashion-mnist).
 */
import assert from "node:assert/strict";
import { initBackend } from "@lib/backend";
import { readIdxFile, readNpyFile, readSafetensorsFile } from "@lib/io";
import { loadCodebook, openTokenDataset, readSynonyms } from "@lib/tokens";
import {
  encodeImages,
  gridSize,
  linearProbe,
  loadDecoder,
  loadTokenizer,
  readTokenizerJson,
  reconstructionMetrics,
  takeImages,
} from "@lib/tokenizer";
import {
  SAMPLE_IMAGES,
  SAMPLE_SIZE,
  TEST_LABELS,
  TRAIN_LABELS,
} from "../_support/fashion_mnist.ts";
const DATA = new URL("../../data/", import.meta.url).pathname;

/** Resolution folder, grid side, least PSNR (dB) of the first 500 test images. */
const SETS = [["fmnist8", 8, 19], ["fmnist16", 16, 25]] as const;

for (const [name, n, minPsnr] of SETS) {
  const dir = `${DATA}${name}`;

  Deno.test(`data/${name}: 60000 + 10000 records of ${n}x${n} codes, Fashion-MNIST's labels, one codebook`, async () => {
    const json = await readTokenizerJson(dir);
    assert.equal(gridSize(json.config), n);
    const K = json.codebookSize;
    for (
      const [split, count, labels] of [
        ["train", 60000, TRAIN_LABELS],
        ["test", 10000, TEST_LABELS],
      ] as const
    ) {
      const ds = await openTokenDataset(`${dir}/fmnist-${split}-token.data.bin.gz`, {
        codebookSize: K,
        gridSide: n,
      });
      assert.equal(ds.length, count);
      const want = await readIdxFile(labels);
      assert.deepEqual(ds.labels, Int32Array.from(want.data as Uint8Array));
    }
    const st = await loadCodebook(`${dir}/codebook.safetensors`, {
      size: K,
      dim: json.config.codeDim,
    });
    const npy = await readNpyFile(`${dir}/codebook.npy`);
    const dec = await readSafetensorsFile(`${dir}/decoder.safetensors`);
    assert.deepEqual(npy.data, st.data);
    assert.deepEqual(dec.tensors.get("codebook")!.data, st.data);
    const syn = await readSynonyms(`${dir}/synonyms.json`);
    assert.equal(syn.size, K);
  });

  Deno.test(`data/${name}: the shipped decoder reconstructs test images at >= ${minPsnr} dB`, async () => {
    await initBackend({ backend: "wasm" });
    const decoder = await loadDecoder(dir);
    try {
      const ds = await openTokenDataset(`${dir}/fmnist-test-token.data.bin.gz`);
      const idx = Int32Array.from({ length: 500 }, (_, i) => i);
      const images = takeImages(await readIdxFile(SAMPLE_IMAGES), 500);
      const m = reconstructionMetrics(decoder, ds.readBatch(idx), images);
      assert.ok(m.psnr >= minPsnr, `PSNR ${m.psnr}`);
    } finally {
      decoder.dispose();
    }
  });
}

Deno.test("data/*/tokenizer.safetensors (the full tokenizer) re-encodes test images to the committed tokens", async () => {
  // byte-identical: the tokens were made with tfjs-wasm's own matMul (with a BLAS, float
  // rounding flips 1 of 25600 fmnist16 codes at a near-tie)
  await initBackend({ backend: "wasm", blas: "off" });
  const images = takeImages(await readIdxFile(SAMPLE_IMAGES), 100);
  for (const [name] of SETS) {
    const tok = await loadTokenizer(`${DATA}${name}`);
    try {
      const ds = await openTokenDataset(`${DATA}${name}/fmnist-test-token.data.bin.gz`);
      const want = ds.readBatch(Int32Array.from({ length: 100 }, (_, i) => i));
      assert.deepEqual(encodeImages(tok, images), want);
    } finally {
      tok.dispose();
    }
  }
});

Deno.test("data/fmnist8: tokens take at least 5x fewer bytes per image than gzipped idx pixels", async () => {
  // Pixels: the gzipped idx of the first 500 test images (442 bytes per image, as Debian's full
  // test file: 4422079 bytes / 10000); tokens: the whole committed split.
  const pixelsPerImage = (await Deno.stat(SAMPLE_IMAGES)).size / SAMPLE_SIZE;
  for (const [split, count] of [["train", 60000], ["test", 10000]] as const) {
    const base = `${DATA}fmnist8/fmnist-${split}-token`;
    const tokens = (await Deno.stat(`${base}.data.bin.gz`)).size +
      (await Deno.stat(`${base}.index.npy.gz`)).size;
    const tokensPerImage = tokens / count;
    assert.ok(
      pixelsPerImage >= 5 * tokensPerImage,
      `${split}: ${pixelsPerImage} pixel bytes vs ${tokensPerImage} token bytes per image`,
    );
  }
});

Deno.test("data/fmnist8: a linear probe on one-hot (position, code) reaches >= 80% test accuracy", async () => {
  const open = (s: string) => openTokenDataset(`${DATA}fmnist8/fmnist-${s}-token.data.bin.gz`);
  const [train, test] = await Promise.all([open("train"), open("test")]);
  const all = (ds: typeof train) => Int32Array.from({ length: ds.length }, (_, i) => i);
  const K = (await readTokenizerJson(`${DATA}fmnist8`)).codebookSize;
  const r = linearProbe(
    { codes: train.readBatch(all(train)), labels: train.labels! },
    { codes: test.readBatch(all(test)), labels: test.labels! },
    64,
    K,
    { epochs: 3, seed: 0 },
  );
  assert.ok(r.testAccuracy >= 0.8, `test accuracy ${r.testAccuracy}`);
});
