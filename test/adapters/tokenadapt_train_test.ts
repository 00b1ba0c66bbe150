import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import type { HostTensor } from "@lib/io";
import {
  evaluateTokenAdapt,
  type GeometricAugConfig,
  type PairTokenizer,
  resolveTokenAdaptConfig,
  resolveTokenAdaptTrainConfig,
  TokenAdapt,
  tokenAdaptLr,
  TokenAdaptTrainer,
  trainTokenAdapt,
} from "@lib/adapters";
import { CodeQuantizer } from "@lib/tokens";
import { Rng } from "@lib/random";

/**
 * A small real tokenizer for these tests: 12x12 images centred in a 16x16 frame, one code per
 * 4x4 cell = the cell's mean intensity in 8 levels; codebook rows are 8 distinct directions.
 */
function intensityTokenizer(): PairTokenizer {
  return {
    frameSize: 16,
    imageSize: 12,
    channels: 1,
    gridSize: 4,
    encode(images: tf.Tensor4D): tf.Tensor3D {
      return tf.tidy(() => {
        const B = images.shape[0];
        const framed = images.pad([[0, 0], [0, 0], [2, 2], [2, 2]]).reshape([B, 16, 16, 1]);
        const mean = tf.avgPool(framed as tf.Tensor4D, 4, 4, "valid").reshape([B, 4, 4]);
        return mean.mul(8).floor().clipByValue(0, 7).toInt() as tf.Tensor3D;
      });
    },
  };
}

/** The matching decoder: each cell's level as a flat 4x4 patch, the 12x12 image cut from the frame. */
function intensityDecode(codes: tf.Tensor3D): tf.Tensor4D {
  return tf.tidy(() => {
    const B = codes.shape[0];
    const v = codes.toFloat().add(0.5).div(8).reshape([B, 4, 1, 4, 1]).tile([1, 1, 4, 1, 4]);
    return v.reshape([B, 1, 16, 16]).slice([0, 0, 2, 2], [B, 1, 12, 12]) as tf.Tensor4D;
  });
}

const codebook: HostTensor<"float32"> = {
  dtype: "float32",
  shape: [8, 4],
  data: Float32Array.from({ length: 32 }, (_, i) => {
    const k = Math.floor(i / 4), t = (k * Math.PI) / 8;
    return [Math.cos(t), Math.sin(t), 0.5 * Math.cos(2 * t), 0.5 * Math.sin(2 * t)][i % 4];
  }),
};

/** Seeded images: a few bright rectangles of random intensity on black. */
function images(n: number, seed: number): HostTensor<"float32"> {
  const r = new Rng(seed), data = new Float32Array(n * 144);
  for (let k = 0; k < n; k++) {
    for (let rect = 0; rect < 2; rect++) {
      const y = r.int(0, 9), x = r.int(0, 9), h = r.int(3, 12 - y + 1), w = r.int(3, 12 - x + 1);
      const v = r.uniformIn(0.3, 1);
      for (let i = y; i < y + h; i++) {
        for (let j = x; j < x + w; j++) data[k * 144 + i * 12 + j] = v;
      }
    }
  }
  return { dtype: "float32", shape: [n, 12, 12], data };
}

const small = resolveTokenAdaptConfig({
  codebookSize: 8,
  codeDim: 4,
  inputGrid: 4,
  outputGrid: 4,
  width: 32,
  heads: 2,
  headDim: 16,
  mlpDim: 64,
});

Deno.test("tokenAdaptLr: linear warmup then cosine to minLr", () => {
  const c = resolveTokenAdaptTrainConfig({ steps: 110, warmupSteps: 10, lr: 1e-3, minLr: 1e-5 });
  assert.ok(Math.abs(tokenAdaptLr(c, 0) - 1e-4) < 1e-12);
  assert.ok(Math.abs(tokenAdaptLr(c, 9) - 1e-3) < 1e-12);
  assert.ok(Math.abs(tokenAdaptLr(c, 10) - 1e-3) < 1e-12);
  assert.ok(Math.abs(tokenAdaptLr(c, 60) - (1e-5 + (1e-3 - 1e-5) / 2)) < 1e-12);
  assert.ok(Math.abs(tokenAdaptLr(c, 110) - 1e-5) < 1e-12);
  assert.throws(
    () => resolveTokenAdaptTrainConfig({ step: 3 } as never),
    /Unknown TokenAdapt training key "step"/,
  );
  assert.throws(() => resolveTokenAdaptTrainConfig({ minLr: 1, lr: 0.1 }), RangeError);
});

Deno.test("evaluation with the identity augmentation: naive and unchanged agree everywhere", async () => {
  await initBackend({ backend: "cpu" });
  const q = CodeQuantizer.from(codebook);
  const ta = TokenAdapt.create(small, new Rng(0));
  const before = tf.memory().numTensors;
  const r = evaluateTokenAdapt(
    ta,
    images(20, 1),
    intensityTokenizer(),
    q,
    {
      flipProb: 0,
      chainProb: 0,
      cropScale: [1, 1],
      cropRatio: [1, 1],
    },
    new Rng(2),
    { batchSize: 8, decode: intensityDecode },
  );
  assert.equal(tf.memory().numTensors, before);
  assert.equal(r.images, 20);
  assert.equal(r.unchanged, 1);
  assert.equal(r.naive, 1);
  assert.ok(r.tokenAdapt >= 0 && r.tokenAdapt <= 1);
  // every way that gives T(x) decodes to the same image: the same PSNR, finite
  assert.ok(r.psnr !== undefined && Number.isFinite(r.psnr.tokenizer) && r.psnr.tokenizer > 5);
  assert.equal(r.psnr.naive, r.psnr.tokenizer);
  assert.equal(r.psnr.unchanged, r.psnr.tokenizer);
  ta.dispose();
  q.dispose();
});

Deno.test("a flip-only augmentation: the naive path is exact, unchanged is not", async () => {
  await initBackend({ backend: "cpu" });
  const q = CodeQuantizer.from(codebook);
  const ta = TokenAdapt.create(small, new Rng(0));
  const r = evaluateTokenAdapt(
    ta,
    images(20, 3),
    intensityTokenizer(),
    q,
    {
      flipProb: 1,
      chainProb: 0,
      cropScale: [1, 1],
      cropRatio: [1, 1],
    },
    new Rng(2),
    { batchSize: 8 },
  );
  // mirroring the image mirrors its cells exactly (the frame is symmetric)
  assert.equal(r.naive, 1);
  assert.ok(r.unchanged < 1);
  ta.dispose();
  q.dispose();
});

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`[${backend}] training lowers the loss, is seeded and leak-free`, async () => {
    await initBackend({ backend });
    const q = CodeQuantizer.from(codebook);
    const tok = intensityTokenizer();
    const data = images(64, 5);
    const run = () => {
      const ta = TokenAdapt.create(small, new Rng(7));
      const before = tf.memory().numTensors;
      const logs = trainTokenAdapt(
        ta,
        data,
        tok,
        q,
        { steps: 30, batchSize: 16, lr: 3e-3, warmupSteps: 5 },
        new Rng(8),
        { onStep: () => {} },
      );
      assert.equal(tf.memory().numTensors, before);
      const w = ta.stateDict().get("reverse_transform.1.weight")!.data;
      ta.dispose();
      return { logs, w };
    };
    const a = run();
    const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
    const first = mean(a.logs.slice(0, 5).map((l) => l.loss));
    const last = mean(a.logs.slice(-5).map((l) => l.loss));
    assert.ok(last < 0.75 * first, `loss ${first} -> ${last}`);
    assert.ok(a.logs.every((l) => l.accuracy >= 0 && l.accuracy <= 1));
    if (backend === "wasm") {
      // the cpu backend is slow per op: the determinism check runs on wasm only
      const b = run();
      assert.deepEqual(b.logs.map((l) => l.loss), a.logs.map((l) => l.loss), "same seed, same run");
      assert.deepEqual(b.w, a.w);
    }
    q.dispose();
  });
}

Deno.test("training refuses a network whose grids do not fit the tokenizer", async () => {
  await initBackend({ backend: "cpu" });
  const q = CodeQuantizer.from(codebook);
  const ta = TokenAdapt.create({ ...small, inputGrid: 5, outputGrid: 5 }, new Rng(0));
  assert.throws(
    () => trainTokenAdapt(ta, images(4, 1), intensityTokenizer(), q, { steps: 1 }, new Rng(0)),
    { name: "RangeError", message: /TokenAdapt 5 -> 5 on a tokenizer with 4x4 codes/ },
  );
  ta.dispose();
  q.dispose();
});

Deno.test("training config: a list of augmentations is a mixture, an empty one is refused", () => {
  const one = resolveTokenAdaptTrainConfig({});
  assert.equal(one.geometric.length, 1);
  assert.deepEqual(one.geometric[0].cropScale, [0.2, 1]);
  assert.equal(one.geometric[0].groupSize, 8);
  const two = resolveTokenAdaptTrainConfig({
    geometric: [{ cropScale: [0.2, 1] }, { cropScale: [0.35, 1], flipProb: 0 }],
  });
  assert.deepEqual(two.geometric.map((g) => g.cropScale), [[0.2, 1], [0.35, 1]]);
  assert.deepEqual(two.geometric.map((g) => g.flipProb), [0.5, 0]);
  assert.throws(() => resolveTokenAdaptTrainConfig({ geometric: [] }), RangeError);
});

Deno.test("[wasm] a trainer restored from its state continues exactly", async () => {
  await initBackend({ backend: "wasm" });
  const q = CodeQuantizer.from(codebook);
  const tok = intensityTokenizer();
  const data = images(48, 9);
  const config = {
    steps: 10,
    batchSize: 8,
    lr: 3e-3,
    warmupSteps: 2,
    // step s draws from entry s % 2: the identity, then a flip of every sample
    geometric: [
      { flipProb: 0, chainProb: 0, cropScale: [1, 1], cropRatio: [1, 1] },
      { flipProb: 1, chainProb: 0, cropScale: [1, 1], cropRatio: [1, 1] },
    ] satisfies GeometricAugConfig[],
  };
  // whole run
  const ta = TokenAdapt.create(small, new Rng(3));
  const whole = new TokenAdaptTrainer(ta, data, tok, q, config, new Rng(4));
  const wholeLogs = Array.from({ length: 10 }, () => whole.next());
  assert.ok(whole.done);
  whole.dispose();
  const want = ta.stateDict();
  // 4 steps, state to host, a fresh model and trainer from that state, 6 more
  const tb = TokenAdapt.create(small, new Rng(3));
  const first = new TokenAdaptTrainer(tb, data, tok, q, config, new Rng(4));
  const firstLogs = Array.from({ length: 4 }, () => first.next());
  const state = first.state();
  const weights = tb.stateDict();
  first.dispose();
  tb.dispose();
  const tc = TokenAdapt.create(small, new Rng(99));
  tc.loadStateDict(weights);
  const second = new TokenAdaptTrainer(tc, data, tok, q, config, new Rng(12345));
  second.restore(state);
  assert.equal(second.step, 4);
  const before = tf.memory().numTensors;
  const secondLogs = Array.from({ length: 6 }, () => second.next());
  assert.equal(tf.memory().numTensors, before, "no tensor leaks per step");
  second.dispose();
  const strip = (l: { seconds: number }) => ({ ...l, seconds: 0 });
  assert.deepEqual([...firstLogs, ...secondLogs].map(strip), wholeLogs.map(strip));
  const got = tc.stateDict();
  for (const [k, v] of want) assert.deepEqual(got.get(k)!.data, v.data, k);
  // a state past the schedule, or with a missing moment, is refused
  assert.throws(() =>
    new TokenAdaptTrainer(tc, data, tok, q, config, new Rng(0)).restore({
      ...state,
      step: 11,
    }), /at step 11: the schedule has 10 steps/);
  const partial = new Map(state.moments);
  partial.delete([...partial.keys()][0]);
  assert.throws(
    () =>
      new TokenAdaptTrainer(tc, data, tok, q, config, new Rng(0)).restore({
        ...state,
        moments: partial,
      }),
    /moment "optimizer\.exp_avg\..*" is missing/,
  );
  ta.dispose();
  tc.dispose();
  q.dispose();
});

Deno.test("[wasm] the held-out loss is the training loss's cross-entropy, measured without updates", async () => {
  await initBackend({ backend: "wasm" });
  const q = CodeQuantizer.from(codebook);
  const tok = intensityTokenizer();
  const ta = TokenAdapt.create(small, new Rng(5));
  const identity: GeometricAugConfig = {
    flipProb: 0,
    chainProb: 0,
    cropScale: [1, 1],
    cropRatio: [1, 1],
  };
  const one = images(1, 2);
  const r = evaluateTokenAdapt(ta, one, tok, q, identity, new Rng(1));
  // a fresh network: its logits are near uniform over K = 8 codes, so the loss is near ln 8
  assert.ok(Math.abs(r.loss - Math.log(8)) < 0.5, `loss ${r.loss}`);
  // the first training step on the same image and A reports the same loss (before its update)
  const logs = trainTokenAdapt(ta, one, tok, q, {
    steps: 1,
    batchSize: 1,
    geometric: identity,
  }, new Rng(0));
  assert.ok(Math.abs(logs[0].loss - r.loss) < 1e-5, `${logs[0].loss} vs ${r.loss}`);
  ta.dispose();
  q.dispose();
});

Deno.test("[wasm] a mixture's step s draws A from entry s % length", async () => {
  await initBackend({ backend: "wasm" });
  const q = CodeQuantizer.from(codebook);
  const tok = intensityTokenizer();
  const data = images(32, 4);
  const id: GeometricAugConfig = {
    flipProb: 0,
    chainProb: 0,
    cropScale: [1, 1],
    cropRatio: [1, 1],
  };
  const flip: GeometricAugConfig = { ...id, flipProb: 1 };
  const losses = (geometric: GeometricAugConfig[]) => {
    const ta = TokenAdapt.create(small, new Rng(3));
    const logs = trainTokenAdapt(
      ta,
      data,
      tok,
      q,
      { steps: 3, batchSize: 8, geometric },
      new Rng(4),
    );
    ta.dispose();
    return logs.map((l) => l.loss);
  };
  const [mix, idOnly, flipOnly] = [losses([id, flip]), losses([id]), losses([flip])];
  assert.equal(mix[0], idOnly[0], "step 0: entry 0");
  assert.notEqual(mix[1], idOnly[1], "step 1: entry 1, not entry 0");
  assert.notEqual(flipOnly[0], idOnly[0], "the two entries give different pairs");
  q.dispose();
});
