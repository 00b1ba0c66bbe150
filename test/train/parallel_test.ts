import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { classifierTiny, MtmModel, mtmTiny, TokenClassifier } from "@lib/models";
import { Rng } from "@lib/random";
import { openTokenDataset, writeTokenDataset } from "@lib/tokens";
import {
  AdamW,
  checkRunConfig,
  createRunDir,
  DataParallel,
  finetune,
  FINETUNE_DEFAULTS,
  type FinetuneConfig,
  liveWorkers,
  loadCheckpoint,
  NonFiniteLossError,
  pretrain,
  PRETRAIN_DEFAULTS,
  type PretrainConfig,
  readRunLog,
  smoothedOneHot,
  trainLoop,
} from "@lib/train";
import { tinyData } from "./_tiny.ts";

// wasm: the backend the workers exist for (and the one whose gather checks its indices)
await initBackend({ backend: "wasm" });

const NO_DROPOUT = { embedDropout: 0, decoderDropout: 0, decoderAttnDropout: 0 };

function randomCodes(B: number, m: number, K: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: B * m * m }, () => rng.int(0, K));
}

type HostMap = Map<string, Float32Array>;

/** Host copies of a map of tensors. */
function host(m: Map<string, tf.Tensor>): HostMap {
  return new Map([...m].map(([k, t]) => [k, t.dataSync().slice() as Float32Array]));
}

/** Largest relative L2 difference over the arrays of two maps with the same keys. */
function worstRelative(a: HostMap, b: HostMap): number {
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  let worst = 0;
  for (const [k, x] of a) {
    const y = b.get(k)!;
    let num = 0, den = 0;
    for (let i = 0; i < x.length; i++) {
      num += (x[i] - y[i]) ** 2;
      den += x[i] ** 2;
    }
    worst = Math.max(worst, den === 0 ? Math.sqrt(num) : Math.sqrt(num / den));
  }
  return worst;
}

Deno.test("DataParallel: MTM loss and gradients with 2 and 3 shards (uneven) equal the single-process ones", async () => {
  const cfg = mtmTiny(NO_DROPOUT);
  const model = new MtmModel(cfg, new Rng(0));
  const B = 7, m = cfg.gridSide;
  const codes = randomCodes(B, m, cfg.codebookSize, 1);
  const plan = model.randomMasking(B, new Rng(2));
  const x = tf.tensor3d(codes, [B, m, m], "int32");
  const ref = model.params.valueAndGrads(() =>
    model.forward(x, { plan, rng: new Rng(3), training: true }).loss
  );
  const refLoss = ref.value.dataSync()[0];
  const before = tf.memory().numTensors;
  try {
    for (const workers of [2, 3]) {
      const pool = await DataParallel.start(model, { workers });
      try {
        assert.equal(liveWorkers(), workers - 1);
        const r = await pool.gradients({ codes, batch: B, plan }, { rng: new Rng(3), step: 0 });
        assert.ok(
          Math.abs(r.loss - refLoss) <= 1e-6 * refLoss,
          `${workers}: ${r.loss} vs ${refLoss}`,
        );
        const err = worstRelative(host(ref.grads), host(r.grads));
        assert.ok(err < 1e-5, `${workers} shards: relative gradient error ${err}`);
        tf.dispose([...r.grads.values()]);
      } finally {
        await pool.close();
      }
      assert.equal(liveWorkers(), 0);
    }
    assert.equal(tf.memory().numTensors, before);
  } finally {
    tf.dispose([x, ref.value, ...ref.grads.values()]);
    model.dispose();
  }
});

Deno.test("DataParallel: classifier soft-target loss and gradients with 2 shards (5 = 3 + 2) equal the single-process ones", async () => {
  const cfg = classifierTiny({ dropPath: 0, embedDropout: 0 });
  const model = new TokenClassifier(cfg, new Rng(0));
  const B = 5, m = cfg.gridSide, C = cfg.numClasses;
  const codes = randomCodes(B, m, cfg.codebookSize, 4);
  const labels = Int32Array.from({ length: B }, (_, i) => (3 * i) % C);
  const targets = smoothedOneHot(labels, C, 0.1);
  const x = tf.tensor3d(codes, [B, m, m], "int32");
  const t = tf.tensor2d(targets, [B, C]);
  const ref = model.params.valueAndGrads(() =>
    tf.tidy(() => {
      const logp = tf.logSoftmax(model.forward(x, { rng: new Rng(1), training: true }));
      return tf.mean(tf.neg(tf.sum(tf.mul(t, logp), -1))) as tf.Scalar;
    })
  );
  const refLoss = ref.value.dataSync()[0];
  const pool = await DataParallel.start(model, { workers: 2 });
  try {
    const r = await pool.gradients({ codes, batch: B, targets }, {
      rng: new Rng(1),
      step: 0,
      scale: 0.5,
    });
    assert.ok(Math.abs(r.loss - refLoss) <= 1e-6 * refLoss, `${r.loss} vs ${refLoss}`);
    const half = new Map([...ref.grads].map(([k, g]) => [k, g.mul(0.5)]));
    const err = worstRelative(host(half), host(r.grads));
    assert.ok(err < 1e-5, `relative gradient error ${err} (loss scale 0.5)`);
    tf.dispose([...r.grads.values(), ...half.values()]);
  } finally {
    await pool.close();
    tf.dispose([x, t, ref.value, ...ref.grads.values()]);
    model.dispose();
  }
});

Deno.test("DataParallel: tensors stay flat in the main thread and in the workers over 12 steps", async () => {
  const cfg = mtmTiny();
  const model = new MtmModel(cfg, new Rng(0));
  const B = 6, m = cfg.gridSide;
  const pool = await DataParallel.start(model, { workers: 2 });
  try {
    const step = async (i: number) => {
      const codes = randomCodes(B, m, cfg.codebookSize, 10 + i);
      const plan = model.randomMasking(B, new Rng(i));
      const r = await pool.gradients({ codes, batch: B, plan }, { rng: new Rng(i), step: i });
      tf.dispose([...r.grads.values()]);
    };
    await step(0);
    const main0 = tf.memory().numTensors;
    const workers0 = await pool.workerTensors();
    for (let i = 1; i <= 12; i++) await step(i);
    assert.equal(tf.memory().numTensors, main0);
    assert.deepEqual(await pool.workerTensors(), workers0);
  } finally {
    await pool.close();
    model.dispose();
  }
});

Deno.test("DataParallel: an exception in a worker's shard surfaces as the same error class, and close() leaves no worker", async () => {
  const cfg = mtmTiny();
  const model = new MtmModel(cfg, new Rng(0));
  const B = 4, m = cfg.gridSide;
  const codes = randomCodes(B, m, cfg.codebookSize, 5);
  codes[3 * m * m + 5] = cfg.codebookSize + 7; // out of range, in the worker's shard only
  const plan = model.randomMasking(B, new Rng(1));
  const before = tf.memory().numTensors;
  const pool = await DataParallel.start(model, { workers: 2 });
  try {
    await assert.rejects(
      () => pool.gradients({ codes, batch: B, plan }, { rng: new Rng(1), step: 0 }),
      (e: Error) => {
        assert.ok(e instanceof RangeError, `${e.name}: ${e.message}`);
        assert.match(e.message, /Cannot gather row/);
        assert.match(e.stack ?? "", /data-parallel worker 1/);
        return true;
      },
    );
    assert.equal(tf.memory().numTensors, before, "the main shard's gradients are disposed");
    // the pool still works after a shard failed
    codes[3 * m * m + 5] = 0;
    const r = await pool.gradients({ codes, batch: B, plan }, { rng: new Rng(1), step: 0 });
    tf.dispose([...r.grads.values()]);
  } finally {
    await pool.close();
    model.dispose();
  }
  assert.equal(liveWorkers(), 0);
});

Deno.test("DataParallel: bad input is refused with typed errors naming the value", async () => {
  const model = new MtmModel(mtmTiny(), new Rng(0));
  try {
    await assert.rejects(() => DataParallel.start(model, { workers: 0 }), RangeError);
    await assert.rejects(
      () => DataParallel.start({ config: model.config } as unknown as MtmModel, { workers: 2 }),
      /neither an MtmModel nor a TokenClassifier/,
    );
    const pool = await DataParallel.start(model, { workers: 2 });
    try {
      const m = model.config.gridSide;
      const plan = model.randomMasking(1, new Rng(0));
      await assert.rejects(
        () =>
          pool.gradients({ codes: new Int32Array(m * m), batch: 1, plan }, {
            rng: new Rng(0),
            step: 0,
          }),
        /Cannot split a batch of 1 across 2 data-parallel workers/,
      );
      await assert.rejects(
        () => pool.gradients({ codes: new Int32Array(3), batch: 2 }, { rng: new Rng(0), step: 0 }),
        TypeError,
      );
      await assert.rejects(
        () =>
          pool.gradients({ codes: new Int32Array(2 * m * m), batch: 2 }, {
            rng: new Rng(0),
            step: 0,
          }),
        /without a masking plan/,
      );
    } finally {
      await pool.close();
    }
    await assert.rejects(
      () =>
        DataParallel.start(model, { workers: 2 }).then((p) => p.close().then(() => p)).then(
          (p) => p.gradients({ codes: new Int32Array(0), batch: 2 }, { rng: new Rng(0), step: 0 }),
        ),
      /the pool is closed/,
    );
  } finally {
    model.dispose();
  }
  assert.equal(liveWorkers(), 0);
});

/** A tiny MTM trained by trainLoop, in-process (W=1) or through a pool (W>1). */
async function loopRun(workers: number, steps: number) {
  const cfg = mtmTiny(NO_DROPOUT);
  const model = new MtmModel(cfg, new Rng(0));
  const data = tinyData(40, cfg.gridSide, cfg.codebookSize, 4, 9);
  const optimizer = new AdamW(
    model.params.entries().filter((e) => e.trainable).map((e) => ({
      name: e.name,
      variable: e.variable,
      weightDecay: e.shape.length >= 2 ? 0.05 : 0,
    })),
    { betas: [0.9, 0.95] },
  );
  const rngModel = new Rng(11);
  const pool = workers > 1 ? await DataParallel.start(model, { workers }) : null;
  const losses: number[] = [];
  try {
    await trainLoop({
      params: model.params,
      optimizer,
      data,
      seed: 3,
      batchSize: 8,
      accumIter: 2,
      epochs: 10,
      maxSteps: steps,
      lrAt: () => 1e-3,
      prepare: (b) => {
        const codes = tf.tensor3d(b.codes, b.shape, "int32");
        return {
          loss: () => model.forward(codes, { rng: rngModel, training: true }).loss,
          dispose: () => codes.dispose(),
        };
      },
      gradients: pool === null ? undefined : (b, scale) =>
        pool.gradients({
          codes: b.codes.slice(),
          batch: b.shape[0],
          plan: model.randomMasking(b.shape[0], rngModel),
        }, { scale, rng: new Rng(0), step: b.step }),
      onStep: (info) => {
        losses.push(info.loss);
      },
    });
    return {
      losses,
      params: host(new Map(model.params.entries().map((e) => [e.name, e.variable]))),
    };
  } finally {
    await pool?.close();
    optimizer.dispose();
    model.dispose();
  }
}

Deno.test("trainLoop with a 2-worker pool matches the in-process loop in losses and parameters (accumIter 2)", async () => {
  const before = tf.memory().numTensors;
  const a = await loopRun(1, 4);
  const b = await loopRun(2, 4);
  assert.equal(a.losses.length, 4);
  a.losses.forEach((l, i) => {
    assert.ok(Math.abs(l - b.losses[i]) <= 1e-5 * l, `step ${i + 1}: ${l} vs ${b.losses[i]}`);
  });
  // The attention key biases get a gradient that is exactly 0 in exact arithmetic
  // (softmax ignores a constant added to a row), i.e. pure rounding noise, which AdamW
  // turns into steps of size ~lr whatever the summation order: they are compared apart.
  const split = (p: HostMap, key: boolean): HostMap =>
    new Map([...p].map(([k, x]) => {
      if (!k.endsWith("attn.qkv.bias")) return [k, key ? new Float32Array(0) : x];
      const c = x.length / 3;
      return [k, key ? x.slice(c, 2 * c) : Float32Array.of(...x.slice(0, c), ...x.slice(2 * c))];
    }));
  const err = worstRelative(split(a.params, false), split(b.params, false));
  assert.ok(err < 1e-5, `parameters after 4 AdamW steps: relative difference ${err}`);
  const kb = split(b.params, true);
  for (const [k, x] of split(a.params, true)) {
    x.forEach((v, i) => {
      assert.ok(Math.abs(v - kb.get(k)![i]) <= 4 * 2 * 1e-3, `${k} key bias ${i}`);
    });
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("trainLoop with a pool: NaN targets in the worker's shard stop the run with NonFiniteLossError, no leak", async () => {
  const cfg = classifierTiny({ numClasses: 4 });
  const model = new TokenClassifier(cfg, new Rng(0));
  const data = tinyData(40, cfg.gridSide, cfg.codebookSize, 4, 9);
  const optimizer = new AdamW(
    model.params.entries().map((e) => ({ name: e.name, variable: e.variable })),
    {},
  );
  const before = tf.memory().numTensors;
  const pool = await DataParallel.start(model, { workers: 2 });
  const steps: number[] = [];
  try {
    await assert.rejects(
      () =>
        trainLoop({
          params: model.params,
          optimizer,
          data,
          seed: 0,
          batchSize: 6,
          epochs: 5,
          lrAt: () => 1e-3,
          prepare: () => {
            throw new Error("not used with a pool");
          },
          gradients: (b, scale) => {
            const targets = smoothedOneHot(b.labels!, 4, 0.1);
            if (b.step === 2) targets[5 * 4 + 1] = NaN; // sample 5: worker 1's shard
            return pool.gradients({ codes: b.codes.slice(), batch: 6, targets }, {
              scale,
              rng: new Rng(b.step),
              step: b.step,
            });
          },
          onStep: (info) => {
            steps.push(info.step);
          },
        }),
      (e: Error) => e instanceof NonFiniteLossError && e.step === 2,
    );
    assert.deepEqual(steps, [1, 2]);
    assert.equal(tf.memory().numTensors, before, "the NaN step's gradients are disposed");
  } finally {
    await pool.close();
    optimizer.dispose();
    model.dispose();
  }
  assert.equal(liveWorkers(), 0);
});

// ---- the recipes with config.workers ----

const K = 16, C = 4, n = 10;

/** An official-format dataset of N learnable records. */
async function tinyDataset(dir: string, N: number, seed: number): Promise<string> {
  const rng = new Rng(seed);
  const codes = new Int32Array(N * n * n), labels = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    labels[i] = rng.int(0, C);
    for (let j = 0; j < n * n; j++) {
      codes[i * n * n + j] = rng.uniform() < 0.7 ? labels[i] * 4 + rng.int(0, 4) : rng.int(0, K);
    }
  }
  const path = `${dir}/tiny-train-token.data.bin.gz`;
  await writeTokenDataset(path, codes, { gridSide: n, codebookSize: K, labels });
  return path;
}

function pretrainConfig(train: string, over: Partial<PretrainConfig>): PretrainConfig {
  return {
    ...PRETRAIN_DEFAULTS,
    model: mtmTiny({ codebookSize: K }),
    data: { train, test: null, limitTrain: null, limitTest: null },
    batchSize: 7, // 4 + 3: an uneven last shard
    accumIter: 1,
    epochs: 2,
    warmupEpochs: 1,
    lr: 1e-3,
    logEvery: 1,
    crop: "random",
    ...over,
  } as PretrainConfig;
}

async function stepLosses(dir: string): Promise<number[]> {
  return (await readRunLog(dir)).filter((r) => r.type === "step").map((r) => r.loss as number);
}

function assertClose(a: number[], b: number[], rel: number, what: string): void {
  assert.equal(a.length, b.length, what);
  a.forEach((x, i) =>
    assert.ok(Math.abs(x - b[i]) <= rel * Math.abs(x), `${what} ${i}: ${x} vs ${b[i]}`)
  );
}

Deno.test("pretrain with workers=2 gives the workers=1 losses (no dropout; random crops and masks drawn in the main thread)", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const train = await tinyDataset(tmp, 36, 1);
    const data = await openTokenDataset(train, { codebookSize: K });
    const before = tf.memory().numTensors;
    const losses: number[][] = [];
    for (const workers of [1, 2]) {
      const cfg = pretrainConfig(train, {
        workers,
        model: mtmTiny({ codebookSize: K, ...NO_DROPOUT }),
      });
      const model = new MtmModel(cfg.model, new Rng(cfg.seed).fork("init"));
      const dir = await createRunDir(tmp, `w${workers}`);
      const s = await pretrain({ config: cfg, model, data, runDir: dir, progress: false });
      assert.equal(s.steps, 10);
      losses.push(await stepLosses(dir));
      model.dispose();
    }
    assertClose(losses[0], losses[1], 1e-5, "step loss");
    assert.equal(tf.memory().numTensors, before);
    assert.equal(liveWorkers(), 0);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("pretrain with workers=2 and dropout: reproducible, and a resumed run gives the uninterrupted run's losses", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const train = await tinyDataset(tmp, 36, 2);
    const data = await openTokenDataset(train, { codebookSize: K });
    const cfg = pretrainConfig(train, { workers: 2 });
    const m1 = new MtmModel(cfg.model, new Rng(cfg.seed).fork("init"));
    const dirA = await createRunDir(tmp, "a");
    await pretrain({ config: cfg, model: m1, data, runDir: dirA, progress: false });
    const m2 = new MtmModel(cfg.model, new Rng(cfg.seed).fork("init"));
    const dirB = await createRunDir(tmp, "b");
    await pretrain({
      config: { ...cfg, maxSteps: 4 },
      model: m2,
      data,
      runDir: dirB,
      progress: false,
    });
    m2.dispose();
    const ck = await loadCheckpoint(dirB);
    assert.equal(ck.state.step, 4);
    assert.equal((ck.state.config as PretrainConfig).workers, 2);
    const m3 = new MtmModel(cfg.model, new Rng(7).fork("init")); // overwritten by the checkpoint
    await pretrain({
      config: { ...(ck.state.config as PretrainConfig), maxSteps: null },
      model: m3,
      data,
      runDir: dirB,
      resume: ck,
      progress: false,
      print: () => {},
    });
    const la = await stepLosses(dirA), lb = await stepLosses(dirB);
    assert.equal(la.length, 10);
    assert.deepEqual(lb, la, "bit-identical losses");
    const sa = m1.params.stateDict(), sb = m3.params.stateDict();
    for (const [k, t] of sa) assert.deepEqual(sb.get(k)!.data, t.data, k);
    m1.dispose();
    m3.dispose();
    assert.equal(liveWorkers(), 0);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

function finetuneConfig(train: string, over: Partial<FinetuneConfig>): FinetuneConfig {
  return {
    ...FINETUNE_DEFAULTS,
    model: classifierTiny({ codebookSize: K, numClasses: C, dropPath: 0, embedDropout: 0 }),
    data: { train, test: null, limitTrain: null, limitTest: null },
    batchSize: 8,
    epochs: 2,
    warmupEpochs: 1,
    lr: 3e-3,
    logEvery: 1,
    ...over,
  } as FinetuneConfig;
}

Deno.test("finetune with workers=2 gives the workers=1 losses (no dropout); NaN targets from the augmentation step stop it with no worker left", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const train = await tinyDataset(tmp, 40, 3);
    const data = await openTokenDataset(train, { codebookSize: K });
    const losses: number[][] = [];
    for (const workers of [1, 2]) {
      const cfg = finetuneConfig(train, { workers });
      const model = new TokenClassifier(cfg.model, new Rng(1));
      const dir = await createRunDir(tmp, `ft${workers}`);
      await finetune({ config: cfg, model, data, runDir: dir, progress: false });
      losses.push(await stepLosses(dir));
      model.dispose();
    }
    assert.equal(losses[0].length, 10);
    assertClose(losses[0], losses[1], 1e-5, "step loss");

    const cfg = finetuneConfig(train, { workers: 2 });
    const model = new TokenClassifier(cfg.model, new Rng(1));
    const dir = await createRunDir(tmp, "nan");
    const before = tf.memory().numTensors;
    await assert.rejects(
      () =>
        finetune({
          config: cfg,
          model,
          data,
          runDir: dir,
          progress: false,
          augment: ({ codes, labels, step }) =>
            tf.tidy(() => {
              const t = smoothedOneHot(labels!, C, 0.1);
              if (step === 3) t[7 * C] = NaN; // the last sample: the worker's shard
              return {
                codes: tf.slice(codes, [0, 0, 0], [-1, 8, 8]) as tf.Tensor3D,
                targets: tf.tensor2d(t, [labels!.length, C]),
              };
            }),
        }),
      (e: Error) => e instanceof NonFiniteLossError && e.step === 3,
    );
    assert.equal(liveWorkers(), 0, "the pool is closed on the error");
    assert.equal(tf.memory().numTensors, before);
    const err = (await readRunLog(dir)).find((r) => r.type === "error")!;
    assert.equal(err.error, "NonFiniteLossError");
    model.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("config key workers: checked against the batch size", () => {
  const cfg = pretrainConfig("x", { workers: 8 });
  assert.throws(
    () => checkRunConfig(cfg),
    /Config key "workers": 8 must be an integer in \[1, batchSize = 7\]/,
  );
  assert.throws(() => checkRunConfig({ ...cfg, workers: 0 }), RangeError);
  checkRunConfig({ ...cfg, workers: undefined }); // runs from before the key: 1
});
