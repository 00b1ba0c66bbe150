/**
 * The tokenizer's tasks end to end, spawned as `deno run` on tiny inputs.
 */
import assert from "node:assert/strict";
import { initBackend } from "@lib/backend";
import { readIdxFile, writeIdx, writePngFile } from "@lib/io";
import { openTokenDataset } from "@lib/tokens";
import { loadDecoder, readTokenizerJson, renderTokenGrid } from "@lib/tokenizer";
import { SAMPLE_IMAGES, SAMPLE_LABELS } from "../_support/fashion_mnist.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function run(
  task: string,
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}tasks/${task}.ts`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: p.code, out: dec.decode(p.stdout), err: dec.decode(p.stderr) };
}

async function smallSplit(dir: string, n: number): Promise<[string, string]> {
  const im = await readIdxFile(SAMPLE_IMAGES);
  const lb = await readIdxFile(SAMPLE_LABELS);
  const images = `${dir}/images-idx3-ubyte`, labels = `${dir}/labels-idx1-ubyte`;
  await Deno.writeFile(
    images,
    writeIdx({
      dtype: "uint8",
      shape: [n, 28, 28],
      data: (im.data as Uint8Array).slice(0, n * 784),
    }),
  );
  await Deno.writeFile(
    labels,
    writeIdx({ dtype: "uint8", shape: [n], data: (lb.data as Uint8Array).slice(0, n) }),
  );
  return [images, labels];
}

Deno.test("tokenizer:train -> tokenize -> decode on 48 Fashion-MNIST images", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [images, labels] = await smallSplit(dir, 48);
    const run1 = `${dir}/run`;
    const tiny = [
      "--tokenizer.widths=[4,8,8]",
      "--tokenizer.codebookSize=16",
      "--tokenizer.codeDim=8",
      `--images=${images}`,
      `--testImages=${images}`,
      "--train.steps=4",
      "--train.batchSize=16",
      "--train.checkpointEvery=2",
    ];
    const t = await run("tokenizer_train", [...tiny, "--out", run1]);
    assert.equal(t.code, 0, t.err);
    assert.match(t.err, /tokenizer 4\/4 \(100%\)/);
    assert.match(t.err, /test reconstruction on 48 images: PSNR [\d.]+ dB/);
    const metrics = JSON.parse(await Deno.readTextFile(`${run1}/metrics.json`));
    assert.equal(metrics.test.count, 48);
    assert.ok(metrics.codebookAfter <= 16 && metrics.codebookAfter >= 1);
    const json = await readTokenizerJson(run1);
    assert.equal(json.codebookSize, metrics.codebookAfter);
    // resuming a finished run does no steps and changes nothing
    const before = await Deno.readFile(`${run1}/metrics.json`);
    const r = await run("tokenizer_train", [...tiny, "--resume", run1]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /is already finished \(step 4 of 4\); nothing to do, nothing changed/);
    assert.deepEqual(await Deno.readFile(`${run1}/metrics.json`), before);

    const out = `${dir}/tokens`;
    const k = await run("tokenize", [
      "--tokenizer",
      run1,
      "--out",
      out,
      "--images",
      images,
      "--labels",
      labels,
      "--name",
      "small",
    ]);
    assert.equal(k.code, 0, k.err);
    assert.match(k.out, /small: 48 images -> .* \(8x8 codes, K=\d+\); tokens [\d.]+ B\/image/);
    for (
      const f of [
        "small-token.data.bin.gz",
        "small-token.index.npy.gz",
        "small-label.txt",
        "codebook.safetensors",
        "codebook.npy",
        "synonyms.json",
        "decoder.safetensors",
        "tokenizer.json",
      ]
    ) {
      assert.ok((await Deno.stat(`${out}/${f}`)).size > 0, f);
    }
    const ds = await openTokenDataset(`${out}/small-token.data.bin.gz`);
    assert.equal(ds.length, 48);
    assert.equal(ds.gridSide, 8);
    const lb = await readIdxFile(labels);
    assert.deepEqual(Array.from(ds.labels!), Array.from(lb.data as Uint8Array));

    const d = await run("decode", [
      `${out}/small-token.data.bin.gz`,
      "--indices",
      "3,1,4,1,5",
      "--out",
      `${dir}/grid.png`,
      "--psnr-against",
      images,
    ]);
    assert.equal(d.code, 0, d.err);
    assert.match(d.out, /wrote .*grid.png: 5 records of 48/);
    assert.match(d.out, /reconstruction of 48 records .* PSNR [\d.]+ dB/);
    // the notebook-facing API gives the very same PNG bytes
    await initBackend({ backend: "wasm" });
    const decoder = await loadDecoder(out);
    const grid = renderTokenGrid(decoder, ds, { indices: [3, 1, 4, 1, 5], scale: 2 });
    decoder.dispose();
    assert.deepEqual(await Deno.readFile(`${dir}/grid.png`), grid.png);
    // 5 images in 3 columns, 2 rows, 2 px padding, upscaled 2x
    assert.deepEqual(grid.image.shape, [2 * (2 * 28 + 3 * 2), 2 * (3 * 28 + 4 * 2), 1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the tasks report bad input with exit status 1 (file and index named) or 2 (arguments)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [images, labels] = await smallSplit(dir, 20);
    const lb = await readIdxFile(labels);
    const fewer = `${dir}/fewer-labels`;
    await Deno.writeFile(
      fewer,
      writeIdx({ dtype: "uint8", shape: [19], data: (lb.data as Uint8Array).slice(0, 19) }),
    );
    const tokDir = `${dir}/run`;
    const t = await run("tokenizer_train", [
      "--tokenizer.widths=[4,8,8]",
      "--tokenizer.codebookSize=8",
      "--tokenizer.codeDim=4",
      `--images=${images}`,
      "--testImages=",
      "--train.steps=1",
      "--train.batchSize=8",
      "--out",
      tokDir,
    ]);
    assert.equal(t.code, 0, t.err);
    const tok = ["--tokenizer", tokDir, "--out", `${dir}/o`];
    const mismatch = await run("tokenize", [
      ...tok,
      "--images",
      images,
      "--labels",
      fewer,
      "--name",
      "x",
    ]);
    assert.equal(mismatch.code, 1);
    assert.match(
      mismatch.err,
      /Cannot pair ".*images-idx3-ubyte" \(20 images\) with ".*fewer-labels" \(19 labels\): counts differ/,
    );
    const pngs = `${dir}/pngs`;
    await Deno.mkdir(pngs);
    const g = (h: number) => ({
      dtype: "uint8" as const,
      shape: [h, 28, 1],
      data: new Uint8Array(h * 28),
    });
    await writePngFile(`${pngs}/0.png`, g(28));
    await writePngFile(`${pngs}/1.png`, g(28));
    await writePngFile(`${pngs}/2.png`, g(27));
    const size = await run("tokenize", [...tok, "--images", pngs, "--name", "p"]);
    assert.equal(size.code, 1);
    assert.match(size.err, /Cannot stack image 2 ".*2.png": 27x28, expected 28x28/);
    await Deno.writeFile(`${pngs}/2.png`, new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    const unreadable = await run("tokenize", [...tok, "--images", pngs, "--name", "p"]);
    assert.equal(unreadable.code, 1);
    assert.match(unreadable.err, /Cannot read image 2 of ".*pngs": Cannot decode PNG ".*2.png"/);
    await Deno.remove(`${pngs}/2.png`);
    const big = `${dir}/big-idx`;
    await Deno.writeFile(
      big,
      writeIdx({ dtype: "uint8", shape: [2, 32, 32], data: new Uint8Array(2048) }),
    );
    const other = await run("tokenize", [...tok, "--images", big, "--name", "b"]);
    assert.equal(other.code, 1);
    assert.match(
      other.err,
      /Cannot tokenize ".*big-idx": its images are 1x32x32 \(CxHxW\), the tokenizer takes 1x28x28/,
    );
    const early = await run("tokenizer_train", [`--images=${images}`, `--testImages=${big}`]);
    assert.equal(early.code, 1);
    assert.match(
      early.err,
      /".*big-idx" holds 1x32x32 \(CxHxW\) images, the tokenizer is configured for 1x28x28/,
    );
    assert.doesNotMatch(early.err, /tokenizer \d+\//, "refused before any training step");
    const magic = `${dir}/bad-magic`;
    await Deno.writeFile(magic, new Uint8Array([0x1f, 0x00, 0x08, 0x03, 0, 0, 0, 0]));
    const m = await run("tokenize", [...tok, "--images", magic, "--name", "m"]);
    assert.equal(m.code, 1);
    assert.match(m.err, /Cannot read idx ".*bad-magic": wrong magic 1f 00 08 03/);
    const noOut = await run("tokenize", ["--tokenizer", tokDir]);
    assert.equal(noOut.code, 2);
    const badOpt = await run("tokenizer_train", ["--tokenizer.downsample=3"]);
    assert.equal(badOpt.code, 2);
    assert.match(badOpt.err, /downsample must be 2, 4 or 8, got 3/);
    const unknown = await run("tokenizer_train", ["--train.stpes=3"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /Unknown config key "train.stpes"/);
    const missing = await run("decode", [`${dir}/nothing-token.data.bin.gz`, "--decoder", tokDir]);
    assert.equal(missing.code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer:train reads both committed configs (per-level lists follow the downsampling)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [images] = await smallSplit(dir, 16);
    for (
      const [cfg, n] of [["configs/tokenizer_fmnist16.json", 16], [
        "configs/tokenizer_fmnist8.json",
        8,
      ]]
    ) {
      const out = `${dir}/${n}`;
      const t = await run("tokenizer_train", [
        "--config",
        `${ROOT}${cfg}`,
        `--images=${images}`,
        "--testImages=",
        "--train.steps=1",
        "--train.batchSize=8",
        "--out",
        out,
      ]);
      assert.equal(t.code, 0, t.err);
      const json = await readTokenizerJson(out);
      assert.equal(json.config.imageSize / json.config.downsample, n);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
