import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { Rng } from "@lib/random";
import {
  AdamW,
  addWeightDecay,
  cosineLr,
  epochPlan,
  type LoopPosition,
  type MicroBatch,
  NonFiniteLossError,
  type PreparedBatch,
  type StepInfo,
  trainLoop,
} from "@lib/train";
import { TinyClassifier, tinyData } from "./_tiny.ts";

await initBackend({ backend: "cpu" });

const K = 16, C = 4, n = 4;

function optimizerFor(model: TinyClassifier): AdamW {
  const g = addWeightDecay(
    model.entries().map((e) => ({ name: e.name, shape: e.shape, trainable: e.trainable })),
    0.05,
  );
  return new AdamW(
    g.settings.map((s) => ({
      name: s.name,
      variable: model.entries().find((e) => e.name === s.name)!.variable,
      lrScale: s.lrScale,
      weightDecay: s.weightDecay,
    })),
    { betas: [0.9, 0.95] },
  );
}

/** prepare: codes -> tensor; optional token dropout from an Rng (a random draw per batch). */
function preparer(model: TinyClassifier, rng?: Rng, nanAtStep = -1) {
  return (b: MicroBatch): PreparedBatch => {
    const [B] = b.shape;
    const codes = b.codes.slice();
    if (rng) { for (let i = 0; i < codes.length; i++) if (rng.uniform() < 0.1) codes[i] = 0; }
    const t = tf.tensor2d(codes, [B, n * n], "int32");
    return {
      loss: () => model.loss(t, b.labels!, b.step === nanAtStep ? NaN : 1),
      dispose: () => t.dispose(),
    };
  };
}

Deno.test("epochPlan drops the last partial batch and incomplete accumulation cycles", () => {
  assert.deepEqual(epochPlan(50, 8, 1), { itersPerEpoch: 6, itersUsed: 6, stepsPerEpoch: 6 });
  assert.deepEqual(epochPlan(50, 8, 4), { itersPerEpoch: 6, itersUsed: 4, stepsPerEpoch: 1 });
  assert.throws(() => epochPlan(10, 8, 2), {
    name: "RangeError",
    message:
      "Cannot train on 10 records with batch 8 x accumIter 2: not one optimizer step per epoch",
  });
});

Deno.test("accumulating 2 micro-batches of 4 equals one batch of 8 (same records, same lr)", async () => {
  const data = tinyData(48, n, K, C, 1);
  const run = async (batchSize: number, accumIter: number) => {
    const model = new TinyClassifier(K, 8, C, 3);
    const opt = optimizerFor(model);
    const losses: number[] = [];
    await trainLoop({
      params: model,
      optimizer: opt,
      data,
      seed: 5,
      batchSize,
      accumIter,
      epochs: 2,
      lrAt: (e) => cosineLr(e, { lr: 1e-2, warmupEpochs: 0.5, epochs: 2 }),
      prepare: preparer(model),
      onStep: (info) => {
        losses.push(info.loss);
      },
    });
    const v = model.values();
    opt.dispose();
    model.dispose();
    return { v, losses };
  };
  const a = await run(8, 1), b = await run(4, 2);
  assert.equal(a.losses.length, 12);
  assert.equal(b.losses.length, 12);
  a.losses.forEach((l, i) => assert.ok(Math.abs(l - b.losses[i]) < 1e-5, `${l} vs ${b.losses[i]}`));
  for (const [name, x] of a.v) {
    const y = b.v.get(name)!;
    const err = Math.max(...x.map((xi, i) => Math.abs(xi - y[i])));
    assert.ok(err < 1e-5, `${name}: ${err}`);
  }
});

Deno.test("the loss goes down on learnable data, and clipping reports the gradient norm", async () => {
  const data = tinyData(64, n, K, C, 2);
  const model = new TinyClassifier(K, 8, C, 4);
  const opt = optimizerFor(model);
  const infos: StepInfo[] = [];
  const r = await trainLoop({
    params: model,
    optimizer: opt,
    data,
    seed: 0,
    batchSize: 16,
    epochs: 10,
    lrAt: () => 3e-2,
    gradClip: 1.0,
    prepare: preparer(model),
    onStep: (i) => {
      infos.push(i);
    },
  });
  assert.equal(r.steps, 40);
  assert.equal(r.stopped, "epochs");
  assert.deepEqual(r.position, { step: 40, epoch: 10, iter: 0 });
  const first = infos.slice(0, 4).reduce((s, i) => s + i.loss, 0) / 4;
  const last = infos.slice(-4).reduce((s, i) => s + i.loss, 0) / 4;
  assert.ok(last < first * 0.7, `loss ${first} -> ${last}`);
  assert.ok(infos.every((i) => i.gradNorm !== null && i.gradNorm > 0));
  opt.dispose();
  model.dispose();
});

Deno.test("a NaN loss throws NonFiniteLossError before touching the parameters", async () => {
  const data = tinyData(32, n, K, C, 3);
  const model = new TinyClassifier(K, 8, C, 5);
  const opt = optimizerFor(model);
  let after2: Map<string, Float32Array> | undefined;
  const before = tf.memory().numTensors;
  await assert.rejects(
    () =>
      trainLoop({
        params: model,
        optimizer: opt,
        data,
        seed: 0,
        batchSize: 8,
        epochs: 3,
        lrAt: () => 1e-2,
        prepare: preparer(model, undefined, 3),
        onStep: (i) => {
          if (i.step === 3) after2 = model.values();
        },
      }),
    (e) => {
      assert.ok(e instanceof NonFiniteLossError);
      assert.equal(e.step, 3);
      assert.ok(Number.isNaN(e.loss));
      assert.match(e.message, /^Loss is NaN at step 3 \(epoch 0\)/);
      return true;
    },
  );
  assert.deepEqual(model.values(), after2);
  assert.equal(tf.memory().numTensors, before, "nothing leaks on the error path");
  opt.dispose();
  model.dispose();
});

Deno.test("tf.memory().numTensors stays flat over 200 training steps", async () => {
  const data = tinyData(40, n, K, C, 4);
  const model = new TinyClassifier(K, 8, C, 6);
  const opt = optimizerFor(model);
  const counts: number[] = [];
  await trainLoop({
    params: model,
    optimizer: opt,
    data,
    seed: 1,
    batchSize: 4,
    accumIter: 2,
    epochs: 40,
    gradClip: 3,
    lrAt: (e) => cosineLr(e, { lr: 1e-2, warmupEpochs: 1, epochs: 40 }),
    prepare: preparer(model, new Rng(9)),
    onStep: () => {
      counts.push(tf.memory().numTensors);
    },
  });
  assert.equal(counts.length, 200);
  assert.equal(counts[199], counts[0], `tensors ${counts[0]} -> ${counts[199]}`);
  opt.dispose();
  model.dispose();
});

Deno.test("stopping at a position and continuing from it reproduces the same losses", async () => {
  const data = tinyData(40, n, K, C, 5);
  const common = { data, seed: 7, batchSize: 4, accumIter: 2, epochs: 3 };
  const lrAt = (e: number) => cosineLr(e, { lr: 1e-2, warmupEpochs: 1, epochs: 3 });
  // uninterrupted
  const m1 = new TinyClassifier(K, 8, C, 8), o1 = optimizerFor(m1), r1 = new Rng(11);
  const full: number[] = [];
  await trainLoop({
    ...common,
    params: m1,
    optimizer: o1,
    lrAt,
    prepare: preparer(m1, r1),
    onStep: (i) => {
      full.push(i.loss);
    },
  });
  // interrupted after 7 steps (mid-epoch: 5 steps per epoch), state copied, continued fresh
  const m2 = new TinyClassifier(K, 8, C, 8), o2 = optimizerFor(m2), r2 = new Rng(11);
  const part: number[] = [];
  const stop = await trainLoop({
    ...common,
    params: m2,
    optimizer: o2,
    lrAt,
    maxSteps: 7,
    prepare: preparer(m2, r2),
    onStep: (i) => {
      part.push(i.loss);
    },
  });
  assert.deepEqual(stop.position, { step: 7, epoch: 1, iter: 4 } satisfies LoopPosition);
  const saved = {
    values: m2.values(),
    json: JSON.parse(JSON.stringify(o2.stateJson())),
    tensors: await o2.stateTensors(),
    rng: r2.getState(),
  };
  o2.dispose();
  m2.dispose();
  const m3 = new TinyClassifier(K, 8, C, 99), o3 = optimizerFor(m3);
  m3.load(saved.values);
  o3.loadState(saved.json, saved.tensors);
  await trainLoop({
    ...common,
    params: m3,
    optimizer: o3,
    lrAt,
    start: stop.position,
    prepare: preparer(m3, new Rng(saved.rng)),
    onStep: (i) => {
      part.push(i.loss);
    },
  });
  assert.equal(full.length, 15);
  assert.deepEqual(part, full);
  assert.deepEqual(m3.values(), m1.values());
  for (const x of [o1, m1, o3, m3]) x.dispose();
});
