import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { type HostTensor, readIdxFile } from "@lib/io";
import { Rng } from "@lib/random";
import {
  batchIndices,
  EmaCodebook,
  encodeImages,
  pruneCodebook,
  takeImages,
  tokenizerTensors,
  trainTokenizer,
} from "@lib/tokenizer";
import { SAMPLE_IMAGES } from "../_support/fashion_mnist.ts";

const TINY = {
  widths: [4, 8, 8],
  codebookSize: 16,
  codeDim: 8,
  encoderBlocks: [0, 1, 0],
  decoderBlocks: [0, 1, 1],
};
const RECIPE = { batchSize: 16, warmupSteps: 2, lr: 3e-3, restartEvery: 5, checkpointEvery: 3 };

let cached: HostTensor | undefined;
async function images(n: number): Promise<HostTensor> {
  cached ??= await readIdxFile(SAMPLE_IMAGES);
  return takeImages(cached, n);
}

Deno.test("EmaCodebook: moving averages, unit codebook rows, dead codes restarted at given vectors", () => {
  const ema = new EmaCodebook(3, 2);
  const e = new Float32Array([1, 0, 0, 1, 0.6, 0.8, 1, 0]);
  ema.initFromVectors(e, new Rng(1));
  assert.ok(ema.counts.every((c) => c === 4 / 3));
  ema.update(e, new Int32Array([0, 1, 1, 0]), 0.5);
  // counts: 0.5 * 4/3 + 0.5 * (2, 2, 0)
  assert.deepEqual(Array.from(ema.counts), [2 / 3 + 1, 2 / 3 + 1, 2 / 3]);
  const cb = ema.codebook();
  for (let k = 0; k < 3; k++) assert.ok(Math.abs(Math.hypot(cb[2 * k], cb[2 * k + 1]) - 1) < 1e-6);
  assert.throws(() => ema.update(e, new Int32Array([0, 3, 0, 0]), 0.5), RangeError);
  // code 2 gets nothing for a while and dies
  for (let i = 0; i < 10; i++) ema.update(e, new Int32Array([0, 1, 1, 0]), 0.5);
  const dead = ema.restartDead(e, 0.05, new Rng(2));
  assert.deepEqual(dead, [2]);
  const row = Array.from(ema.codebook().subarray(4, 6));
  const candidates = [[1, 0], [0, 1], [0.6, 0.8]];
  assert.ok(
    candidates.some((c) => Math.abs(c[0] - row[0]) < 1e-6 && Math.abs(c[1] - row[1]) < 1e-6),
  );
  assert.equal(ema.counts[2], 4 / 3);
  const back = new EmaCodebook(3, 2);
  back.loadTensors(ema.toTensors());
  assert.deepEqual(back.sums, ema.sums);
});

Deno.test("batchIndices: each epoch is a seeded permutation, batches do not overlap within it", () => {
  const seen = new Set<number>();
  for (let s = 0; s < 6; s++) for (const i of batchIndices(0, s, 20, 3)) seen.add(i);
  assert.equal(seen.size, 18);
  assert.deepEqual(batchIndices(4, 7, 20, 3), batchIndices(4, 7, 20, 3));
  assert.notDeepEqual(batchIndices(4, 0, 20, 3), batchIndices(4, 6, 20, 3));
  assert.throws(() => batchIndices(0, 0, 2, 3), RangeError);
});

Deno.test("trainTokenizer lowers the loss on Fashion-MNIST, restarts dead codes, leaks nothing (wasm)", async () => {
  await initBackend({ backend: "wasm" });
  const before = tf.memory().numTensors;
  const { tokenizer, history } = await trainTokenizer(await images(160), {
    config: TINY,
    train: { ...RECIPE, steps: 30, deadThreshold: 0.5, emaDecay: 0.8 },
  });
  const first = history.slice(0, 5).reduce((a, h) => a + h.loss, 0) / 5;
  const last = history.slice(-5).reduce((a, h) => a + h.loss, 0) / 5;
  assert.ok(last < 0.8 * first, `loss ${first} -> ${last}`);
  assert.ok(history.some((h) => h.restarted > 0), "some dead code was restarted");
  assert.ok(history.every((h) => Number.isFinite(h.psnr) && h.codesUsed >= 1));
  tokenizer.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("trainTokenizer resumed from a checkpoint ends bit-identical to an uninterrupted run", async () => {
  await initBackend({ backend: "wasm" });
  const imgs = await images(96);
  const dirA = await Deno.makeTempDir(), dirB = await Deno.makeTempDir();
  try {
    const a = await trainTokenizer(imgs, {
      config: TINY,
      train: { ...RECIPE, steps: 8 },
      runDir: dirA,
    });
    const b1 = await trainTokenizer(imgs, {
      config: TINY,
      train: { ...RECIPE, steps: 8 },
      runDir: dirB,
      stopAtStep: 5,
    });
    b1.tokenizer.dispose();
    const b = await trainTokenizer(imgs, {
      train: { ...RECIPE, steps: 8 },
      runDir: dirB,
      resume: true,
    });
    // B's checkpoints: step 3 (every 3), then 5 (where it stopped): resumed at 5
    assert.equal(b.startStep, 5);
    const ta = await tokenizerTensors(a.tokenizer), tb = await tokenizerTensors(b.tokenizer);
    for (const [k, v] of ta) assert.deepEqual(tb.get(k)!.data, v.data, k);
    await assert.rejects(
      trainTokenizer(imgs, {
        train: { ...RECIPE, steps: 8, lr: 1e-3 },
        runDir: dirB,
        resume: true,
      }),
      { name: "RangeError", message: /recipe .* differs/ },
    );
    await assert.rejects(
      trainTokenizer(await images(80), {
        train: { ...RECIPE, steps: 8 },
        runDir: dirB,
        resume: true,
      }),
      { name: "RangeError", message: /trained on 96 images/ },
    );
    a.tokenizer.dispose();
    b.tokenizer.dispose();
  } finally {
    await Deno.remove(dirA, { recursive: true });
    await Deno.remove(dirB, { recursive: true });
  }
});

Deno.test("pruneCodebook keeps the used codes in order, and encoding afterwards gives remapped codes", async () => {
  await initBackend({ backend: "wasm" });
  const imgs = await images(64);
  const { tokenizer } = await trainTokenizer(imgs, {
    config: { ...TINY, codebookSize: 64 },
    train: { ...RECIPE, steps: 4, restartEvery: 0 },
  });
  const before = encodeImages(tokenizer, imgs);
  const p = pruneCodebook(tokenizer, imgs);
  assert.equal(p.before, 64);
  assert.equal(p.after, new Set(before).size);
  assert.ok(p.after < 64, "a briefly trained 64-code book leaves codes unused");
  assert.equal(tokenizer.codebook.shape[0], p.after);
  for (let i = 1; i < p.kept.length; i++) assert.ok(p.kept[i] > p.kept[i - 1]);
  const after = encodeImages(tokenizer, imgs);
  assert.deepEqual(Array.from(after), Array.from(before, (c) => p.remap[c]));
  assert.equal(p.counts.reduce((a, b) => a + b, 0), before.length);
  tokenizer.dispose();
});

Deno.test("trainTokenizer runs on the cpu backend too, and agrees with wasm on the first loss", async () => {
  const imgs = await images(32);
  const losses: number[] = [];
  for (const backend of ["cpu", "wasm"] as const) {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    const { tokenizer, history } = await trainTokenizer(imgs, {
      config: TINY,
      train: { ...RECIPE, steps: 2 },
    });
    losses.push(history[0].loss);
    assert.ok(history.every((h) => Number.isFinite(h.loss)));
    tokenizer.dispose();
    assert.equal(tf.memory().numTensors, before);
  }
  assert.ok(Math.abs(losses[0] - losses[1]) < 1e-4 * Math.abs(losses[0]), `${losses}`);
});
