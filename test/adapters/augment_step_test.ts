import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  applyGeometric,
  type GeometricParams,
  resolveTokenAdaptConfig,
  TokenAdapt,
} from "@lib/adapters";
import { Rng } from "@lib/random";
import { CodeQuantizer } from "@lib/tokens";
import {
  augmentStepFinetune,
  augmentStepForArm,
  augmentStepPretrain,
  colourChoice,
  createAugmentStep,
  resolveAugmentStepConfig,
} from "@lib/train";

// A small geometry: 8x8 stored codes, f -> 16x16, g reads 12x12 -> 6x6 codes; K = 16, d = 8.
const K = 16, D = 8, N = 8, M = 6;
const taConfig = resolveTokenAdaptConfig({
  codebookSize: K,
  codeDim: D,
  inputGrid: N,
  outputGrid: M,
  width: 32,
  heads: 2,
  headDim: 16,
  mlpDim: 64,
});
const codebookData = new Rng(5).normalArray(K * D);

function setup() {
  const q = CodeQuantizer.from({ dtype: "float32", shape: [K, D], data: codebookData });
  const ta = TokenAdapt.create(taConfig, new Rng(9));
  return { q, ta, dispose: () => (q.dispose(), ta.dispose()) };
}

function batch(B: number, seed: number) {
  const r = new Rng(seed);
  return {
    codes: Int32Array.from({ length: B * N * N }, () => r.int(0, K)),
    labels: Int32Array.from({ length: B }, () => r.int(0, 10)),
  };
}

const hasAdapter = await (async () => {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  return gpu !== undefined && (await gpu.requestAdapter()) !== null;
})();

async function runOnce(backend: "cpu" | "wasm" | "webgpu", seed: number) {
  await initBackend({ backend });
  const { q, ta, dispose } = setup();
  const step = createAugmentStep(augmentStepFinetune(10, M), { quantizer: q, tokenAdapt: ta });
  const b = batch(8, 1);
  const codes = tf.tensor3d(b.codes, [8, N, N], "int32");
  const before = tf.memory().numTensors;
  const out = step.run({ codes, labels: b.labels, epoch: 0, step: 0 }, new Rng(seed));
  const result = {
    codes: Array.from(await out.codes.data()),
    targets: Array.from(await out.targets!.data()),
    record: JSON.parse(JSON.stringify(out.record)),
  };
  tf.dispose([out.codes, out.targets!]);
  assert.equal(tf.memory().numTensors, before, `${backend}: leak-free`);
  codes.dispose();
  dispose();
  return result;
}

Deno.test("augment step (fine-tuning): shapes, soft targets, seeded, leak-free", async () => {
  const a = await runOnce("cpu", 3);
  assert.equal(a.codes.length, 8 * M * M);
  assert.ok(a.codes.every((c) => Number.isInteger(c) && c >= 0 && c < K));
  assert.equal(a.targets.length, 8 * 10);
  for (let i = 0; i < 8; i++) {
    const s = a.targets.slice(i * 10, i * 10 + 10).reduce((x, y) => x + y, 0);
    assert.ok(Math.abs(s - 1) < 1e-5, `target row ${i} sums to ${s}`);
  }
  assert.equal(a.record.tokenAdaptSamples, 4);
  assert.ok(["noise", "coloradapt"].includes(a.record.color));
  const b = await runOnce("cpu", 3);
  assert.deepEqual(b, a);
  const c = await runOnce("cpu", 4);
  assert.notDeepEqual(c.codes, a.codes);
});

for (const backend of ["wasm", "webgpu"] as const) {
  Deno.test({
    name: `augment step: same seed gives the identical batch on cpu and ${backend}`,
    ignore: backend === "webgpu" && !hasAdapter,
    fn: async () => {
      for (const seed of [3, 21]) {
        const ref = await runOnce("cpu", seed);
        const got = await runOnce(backend, seed);
        assert.deepEqual(got.record, ref.record);
        assert.deepEqual(got.targets, ref.targets);
        const diff = got.codes.filter((c, i) => c !== ref.codes[i]).length;
        assert.equal(diff, 0, `${diff} of ${ref.codes.length} codes differ (seed ${seed})`);
      }
    },
  });
}

Deno.test("augment step: the TokenAdapt half (the second, as chunk(2)) is g(geometric(f(emb))) with the recorded draws", async () => {
  await initBackend({ backend: "cpu" });
  const { q, ta, dispose } = setup();
  const cfg = resolveAugmentStepConfig({
    size: M,
    noise: false,
    colorAdapt: false,
    tokenAdaptMix: null,
    baseMix: null,
    numClasses: null,
    chunk: 3,
  });
  const step = createAugmentStep(cfg, { quantizer: q, tokenAdapt: ta });
  const b = batch(8, 2);
  const codes = tf.tensor3d(b.codes, [8, N, N], "int32");
  const out = step.run({ codes, labels: null, epoch: 0, step: 0 }, new Rng(7));
  assert.equal(out.targets, undefined);
  assert.equal(out.record.color, "none");
  const want = tf.tidy(() => {
    const emb = q.embed(codes.slice([4], [4]) as tf.Tensor3D);
    const up = ta.convert(emb);
    const g = applyGeometric(up, out.record.geometric as GeometricParams);
    return q.toCodes(q.embed(ta.invert(g)));
  });
  assert.equal(out.record.baseSamples, 4);
  assert.equal(out.record.tokenAdaptSamples, 4);
  // both halves crop with rrcScale: the geometric crop is the same range
  assert.deepEqual(cfg.geometric.cropScale, cfg.rrcScale);
  const got = tf.tidy(() => out.codes.slice([4], [4]));
  assert.deepEqual(await got.data(), await want.data());
  tf.dispose([codes, out.codes, want, got]);
  dispose();
});

Deno.test("ablation arms switch TokenAdapt and ColorAdapt only; the colour step is one RandomChoice with identity", async () => {
  await initBackend({ backend: "cpu" });
  const base = augmentStepFinetune(10, M);
  const seit = augmentStepForArm(base, "seit");
  assert.equal(seit.tokenAdapt, false);
  assert.equal(seit.colorAdapt, false);
  assert.equal(seit.noise, true);
  assert.deepEqual(augmentStepForArm(base, "seitpp"), base);
  assert.equal(augmentStepForArm(base, "tokenadapt").colorAdapt, false);
  assert.equal(augmentStepForArm(base, "coloradapt").tokenAdapt, false);
  assert.throws(() => augmentStepForArm(base, "all" as never), RangeError);
  // ColorAdapt off: a quarter of the batches get no colour op (not more noise)
  assert.deepEqual(colourChoice(seit), { noise: 0.75, colorAdapt: 0, identity: 0.25 });
  assert.deepEqual(colourChoice(base), { noise: 0.75, colorAdapt: 0.25, identity: 0 });
  assert.equal(colourChoice(augmentStepPretrain(M)), null);
  const { q, ta, dispose } = setup();
  const b = batch(8, 3);
  const codes = tf.tensor3d(b.codes, [8, N, N], "int32");
  for (const arm of ["seit", "coloradapt"] as const) {
    // without TokenAdapt the network is not needed and the whole batch takes the base path
    const step = createAugmentStep(augmentStepForArm(base, arm), { quantizer: q });
    const colors = new Set<string>();
    for (let s = 0; s < 24; s++) {
      const out = step.run({ codes, labels: b.labels, epoch: 0, step: s }, new Rng(s));
      assert.equal(out.record.tokenAdaptSamples, 0);
      assert.equal((out.record.rrc as unknown[]).length, 8);
      colors.add(out.record.color);
      tf.dispose([out.codes, out.targets!]);
    }
    assert.deepEqual(
      [...colors].sort(),
      arm === "seit" ? ["noise", "none"] : ["coloradapt", "noise"],
    );
  }
  const pre = createAugmentStep(augmentStepPretrain(M), { quantizer: q, tokenAdapt: ta });
  const out = pre.run({ codes, labels: null, epoch: 0, step: 0 }, new Rng(1));
  assert.equal(out.record.color, "none");
  assert.equal(out.record.colorDrawn, false);
  assert.equal(
    out.record.tokenAdaptSamples,
    4,
    "pre-training sends half the batch through TokenAdapt",
  );
  assert.equal(out.targets, undefined);
  assert.deepEqual(out.codes.shape, [8, M, M]);
  tf.dispose([codes, out.codes]);
  dispose();
});

Deno.test("augment step refuses bad settings and inputs with named errors", async () => {
  await initBackend({ backend: "cpu" });
  const { q, ta, dispose } = setup();
  assert.throws(() => resolveAugmentStepConfig({ tokenadapt: true } as never), {
    name: "TypeError",
    message: /Unknown augmentation step key "tokenadapt"/,
  });
  assert.throws(() => createAugmentStep({ size: M }, { quantizer: q }), {
    name: "TypeError",
    message: /tokenAdapt is on but no TokenAdapt was given/,
  });
  assert.throws(() => createAugmentStep({ size: 7 }, { quantizer: q, tokenAdapt: ta }), {
    name: "RangeError",
    message: /outputs 6x6 codes, the model takes 7x7/,
  });
  const step = createAugmentStep(augmentStepFinetune(10, M), { quantizer: q, tokenAdapt: ta });
  const codes = tf.tensor3d(batch(6, 1).codes, [6, N, N], "int32");
  assert.throws(
    () => step.run({ codes, labels: new Int32Array(6), epoch: 0, step: 0 }, new Rng(0)),
    { name: "RangeError", message: /each mixed half must have an even size/ },
  );
  assert.throws(
    () => step.run({ codes, labels: null, epoch: 0, step: 0 }, new Rng(0)),
    { name: "TypeError", message: /expected 6 labels, got none/ },
  );
  codes.dispose();
  dispose();
});
