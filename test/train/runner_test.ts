import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { classifierTiny, MtmModel, mtmTiny, TokenClassifier } from "@lib/models";
import { Rng } from "@lib/random";
import { openTokenDataset, writeTokenDataset } from "@lib/tokens";
import {
  createRunDir,
  finetune,
  FINETUNE_DEFAULTS,
  type FinetuneConfig,
  loadCheckpoint,
  type MtmLike,
  NonFiniteLossError,
  pretrain,
  PRETRAIN_DEFAULTS,
  type PretrainConfig,
  readRunLog,
} from "@lib/train";

await initBackend({ backend: "cpu" });

const K = 16, C = 4, n = 10;

/** An official-format dataset of N learnable records in a temp folder. */
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

function pretrainConfig(train: string, over: Partial<PretrainConfig> = {}): PretrainConfig {
  return {
    ...PRETRAIN_DEFAULTS,
    model: mtmTiny({ codebookSize: K }),
    data: { train, test: null, limitTrain: null, limitTest: null },
    batchSize: 8,
    accumIter: 1,
    epochs: 2,
    warmupEpochs: 1,
    lr: 1e-3,
    logEvery: 1,
    crop: "random",
    ...over,
  } as PretrainConfig;
}

Deno.test("pretrain: a run resumed from its checkpoint gives the same losses as one uninterrupted run", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const train = await tinyDataset(tmp, 50, 1);
    const data = await openTokenDataset(train, { codebookSize: K });
    const stepLosses = async (dir: string) =>
      (await readRunLog(dir)).filter((r) => r.type === "step").map((r) => r.loss as number);
    const before = tf.memory().numTensors;
    // uninterrupted: 2 epochs x 6 steps
    const cfg = pretrainConfig(train);
    const m1 = new MtmModel(cfg.model, new Rng(cfg.seed).fork("init"));
    const dirA = await createRunDir(tmp, "a");
    const a = await pretrain({ config: cfg, model: m1, data, runDir: dirA, progress: false });
    assert.equal(a.steps, 12);
    // interrupted after 5 steps (mid-epoch), then resumed in a fresh model from the folder
    const m2 = new MtmModel(cfg.model, new Rng(cfg.seed).fork("init"));
    const dirB = await createRunDir(tmp, "b");
    const b1 = await pretrain({
      config: { ...cfg, maxSteps: 5 },
      model: m2,
      data,
      runDir: dirB,
      progress: false,
    });
    assert.equal(b1.stopped, "maxSteps");
    m2.dispose();
    const ck = await loadCheckpoint(dirB);
    assert.deepEqual([ck.state.step, ck.state.epoch, ck.state.iter], [5, 0, 5]);
    const m3 = new MtmModel(cfg.model, new Rng(999).fork("init")); // other init: overwritten
    const b2 = await pretrain({
      config: { ...(ck.state.config as PretrainConfig), maxSteps: null },
      model: m3,
      data,
      runDir: dirB,
      resume: ck,
      progress: false,
      print: () => {},
    });
    assert.equal(b2.steps, 12);
    const la = await stepLosses(dirA), lb = await stepLosses(dirB);
    assert.equal(la.length, 12);
    assert.deepEqual(lb, la, "bit-identical losses");
    const sa = m1.params.stateDict(), sb = m3.params.stateDict();
    for (const [k, t] of sa) assert.deepEqual(sb.get(k)!.data, t.data, k);
    const types = (await readRunLog(dirB)).map((r) => r.type);
    assert.deepEqual(types.filter((t) => t === "start" || t === "resume" || t === "end"), [
      "start",
      "end",
      "resume",
      "end",
    ]);
    m1.dispose();
    m3.dispose();
    assert.equal(tf.memory().numTensors, before, "no tensors leak across runs");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("pretrain: a NaN loss is logged as an error and the last good checkpoint stays", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const train = await tinyDataset(tmp, 50, 2);
    const data = await openTokenDataset(train, { codebookSize: K });
    const cfg = pretrainConfig(train, { checkpointEvery: 2 });
    const real = new MtmModel(cfg.model, new Rng(0));
    let calls = 0;
    // fault injection around the real model: the 5th forward's loss becomes NaN
    const faulty: MtmLike = {
      params: real.params,
      config: real.config,
      randomMasking: (batch, rng) => real.randomMasking(batch, rng),
      forward: (codes, opts) => {
        const out = real.forward(codes, opts);
        if (++calls === 5) {
          const nan = out.loss.mul(NaN) as tf.Scalar;
          out.loss.dispose();
          return { ...out, loss: nan };
        }
        return out;
      },
    };
    const dir = await createRunDir(tmp, "nan");
    await assert.rejects(
      () => pretrain({ config: cfg, model: faulty, data, runDir: dir, progress: false }),
      NonFiniteLossError,
    );
    const log = await readRunLog(dir);
    const err = log.find((r) => r.type === "error")!;
    assert.equal(err.error, "NonFiniteLossError");
    assert.equal(err.step, 4);
    const ck = await loadCheckpoint(dir);
    assert.equal(ck.state.step, 4, "the checkpoint of step 4 is intact");
    real.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("finetune from a pretrain run: loads the encoder, evaluates, writes the run folder", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const train = await tinyDataset(tmp, 48, 3);
    const data = await openTokenDataset(train, { codebookSize: K });
    const pcfg = pretrainConfig(train, { epochs: 1, warmupEpochs: 0 });
    const mtm = new MtmModel(pcfg.model, new Rng(0));
    const pdir = await createRunDir(tmp, "pre");
    await pretrain({ config: pcfg, model: mtm, data, runDir: pdir, progress: false });
    const cfg: FinetuneConfig = {
      ...FINETUNE_DEFAULTS,
      model: classifierTiny({ codebookSize: K, numClasses: C }),
      data: { train, test: train, limitTrain: null, limitTest: 40 },
      init: pdir,
      batchSize: 8,
      epochs: 3,
      warmupEpochs: 1,
      lr: 3e-3,
      logEvery: 3,
    } as FinetuneConfig;
    const cls = new TokenClassifier(cfg.model, new Rng(1));
    const lines: string[] = [];
    const dir = await createRunDir(tmp, "ft");
    const s = await finetune({
      config: cfg,
      model: cls,
      data,
      test: data,
      runDir: dir,
      progress: false,
      print: (l) => lines.push(l),
    });
    assert.match(
      lines[0],
      /^finetune: loaded \d+ of \d+ tensors from .*model\.safetensors; fresh \(the classifier's own\): head\.weight, head\.bias; dropped \(decoder \/ MLM\): \d+/,
    );
    // the encoder came from the MTM run
    const start = (await readRunLog(dir))[0];
    assert.equal(start.type, "start");
    const init = start.init as { missing: string[]; loaded: string[]; mismatchedShapes: string[] };
    assert.deepEqual(init.missing, ["head.weight", "head.bias"]);
    assert.deepEqual(init.mismatchedShapes, []);
    for (
      const k of [
        "token_emb.word_embeddings.weight",
        "cls_token",
        "pos_embed",
        "blocks.0.attn.qkv.weight",
        "norm.weight",
      ]
    ) {
      assert.ok(init.loaded.includes(k), k);
    }
    assert.equal(s.eval!.n, 40);
    assert.ok(s.eval!.top1 >= 0 && s.eval!.top1 <= 1 && s.eval!.top5 >= s.eval!.top1);
    const types = (await readRunLog(dir)).map((r) => r.type);
    assert.equal(types.filter((t) => t === "eval").length, 3, "an eval after each epoch");
    const metrics = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
    assert.equal(metrics.steps, 18);
    for (
      const f of [
        "config.json",
        "log.jsonl",
        "metrics.json",
        "checkpoint.json",
        "model.safetensors",
      ]
    ) {
      await Deno.stat(`${dir}/${f}`);
    }
    mtm.dispose();
    cls.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
