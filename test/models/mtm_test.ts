/**
 * The MTM model: masking invariants, shapes and dtypes, determinism, training mode,
 * config validation, and tensor leaks over repeated forward/backward passes.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  MtmModel,
  mtmTiny,
  mtmVitBase,
  randomMasking,
  referenceMasks,
  resolveMtmConfig,
} from "@lib/models";
import { Rng } from "@lib/random";

await initBackend({ backend: "wasm" });

function codesFor(batch: number, side: number, k: number, seed: number): tf.Tensor3D {
  const rng = new Rng(seed);
  return tf.tensor3d(
    Int32Array.from({ length: batch * side * side }, () => rng.int(0, k)),
    [batch, side, side],
    "int32",
  );
}

Deno.test("randomMasking keeps ceil(L*0.4) positions out of the encoder, masks a superset, keeps order", () => {
  const cfg = resolveMtmConfig();
  for (let seed = 0; seed < 50; seed++) {
    const batch = 3, l = 196;
    const plan = randomMasking(batch, l, new Rng(seed), cfg);
    assert.equal(plan.numDropped, Math.ceil(l * 0.4));
    assert.ok(plan.maskRatio >= 0.4 && plan.maskRatio <= 1);
    assert.equal(plan.numMasked, Math.ceil(l * plan.maskRatio));
    const kept = l - plan.numDropped;
    for (let b = 0; b < batch; b++) {
      let dropped = 0, masked = 0;
      for (let i = 0; i < l; i++) {
        dropped += plan.dropped[b * l + i];
        masked += plan.masked[b * l + i];
        if (plan.dropped[b * l + i]) {
          assert.equal(plan.masked[b * l + i], 1, "dropped implies masked");
        }
      }
      assert.equal(dropped, plan.numDropped);
      assert.equal(masked, plan.numMasked);
      const k = plan.kept.subarray(b * kept, (b + 1) * kept);
      for (let j = 1; j < kept; j++) assert.ok(k[j] > k[j - 1], "kept patches in increasing order");
      for (const i of k) assert.equal(plan.dropped[b * l + i], 0);
      // The dropped / masked are the smallest noise values.
      const noise = plan.noise.subarray(b * l, (b + 1) * l);
      const sorted = [...noise].sort((x, y) => x - y);
      for (let i = 0; i < l; i++) {
        assert.equal(plan.masked[b * l + i] === 1, noise[i] <= sorted[plan.numMasked - 1]);
        assert.equal(plan.dropped[b * l + i] === 1, noise[i] <= sorted[plan.numDropped - 1]);
      }
    }
  }
});

Deno.test("randomMasking is a pure function of the Rng state or of recorded noise and ratio", () => {
  const cfg = resolveMtmConfig();
  const a = randomMasking(2, 196, new Rng(7), cfg);
  const b = randomMasking(2, 196, new Rng(7), cfg);
  assert.deepEqual(a, b);
  const c = randomMasking(2, 196, { noise: a.noise, maskRatio: a.maskRatio }, cfg);
  assert.deepEqual(c.masked, a.masked);
  assert.deepEqual(c.kept, a.kept);
  const d = randomMasking(2, 196, new Rng(8), cfg);
  assert.notDeepEqual(d.masked, a.masked);
  const m = referenceMasks(a);
  assert.equal(m.all.length, 2 * 197);
  assert.equal(m.all[0], 0);
  assert.throws(
    () => randomMasking(2, 196, { noise: new Float32Array(5), maskRatio: 0.5 }, cfg),
    TypeError,
  );
  assert.throws(() => randomMasking(2, 196, { noise: a.noise, maskRatio: 1.5 }, cfg), RangeError);
  assert.throws(() => randomMasking(2, 196, { noise: a.noise, maskRatio: 0.1 }, cfg), RangeError);
});

Deno.test("MtmModel.forward returns loss [], logits [B, m*m, K] and mask [B, L], all float32", () => {
  const cfg = mtmTiny();
  const model = new MtmModel(cfg, new Rng(0));
  const codes = codesFor(3, 8, cfg.codebookSize, 1);
  try {
    const out = model.forward(codes, { rng: new Rng(2) });
    assert.deepEqual(out.loss.shape, []);
    assert.deepEqual(out.logits.shape, [3, 64, cfg.codebookSize]);
    assert.deepEqual(out.mask.shape, [3, 16]);
    for (const t of [out.loss, out.logits, out.mask]) assert.equal(t.dtype, "float32");
    assert.equal(tf.tidy(() => out.mask.sum().dataSync()[0]), 3 * out.plan.numMasked);
    const loss = out.loss.dataSync()[0];
    assert.ok(Number.isFinite(loss) && loss > 0);
    // At init the logits are nearly uniform: the loss is close to log K.
    assert.ok(Math.abs(loss - Math.log(cfg.codebookSize)) < 0.5, `loss ${loss}`);
    const latent = model.forwardEncoder(codes, out.plan);
    assert.deepEqual(latent.shape, [3, 1 + 16 - out.plan.numDropped, cfg.embedDim]);
    assert.throws(
      () => model.forwardDecoder(tf.zeros([3, 2, cfg.embedDim]) as tf.Tensor3D, out.plan),
      TypeError,
    );
    tf.dispose([out.loss, out.logits, out.mask, latent]);
  } finally {
    codes.dispose();
    model.dispose();
  }
});

Deno.test("MtmModel refuses codes of the wrong dtype or grid, and a plan of another batch", () => {
  const model = new MtmModel(mtmTiny(), new Rng(0));
  const f32 = tf.zeros([2, 8, 8]) as tf.Tensor3D;
  const wrong = tf.zeros([2, 6, 6], "int32") as tf.Tensor3D;
  const codes = codesFor(2, 8, 16, 1);
  try {
    assert.throws(() => model.forward(f32, { rng: new Rng(1) }), /expected int32 \[B, 8, 8\]/);
    assert.throws(() => model.forward(wrong, { rng: new Rng(1) }), TypeError);
    assert.throws(() => model.forward(codes), /without an Rng/);
    const plan = model.randomMasking(3, new Rng(1));
    assert.throws(() => model.forward(codes, { plan }), TypeError);
  } finally {
    tf.dispose([f32, wrong, codes]);
    model.dispose();
  }
});

Deno.test("seeded initialization is deterministic; masking also runs in eval mode", () => {
  const cfg = mtmTiny();
  const a = new MtmModel(cfg, new Rng(3)), b = new MtmModel(cfg, new Rng(3));
  const c = new MtmModel(cfg, new Rng(4));
  const codes = codesFor(2, 8, cfg.codebookSize, 5);
  try {
    for (const name of a.params.names()) {
      assert.deepEqual(a.params.get(name).dataSync(), b.params.get(name).dataSync(), name);
    }
    assert.notDeepEqual(
      a.params.get("blocks.0.attn.qkv.weight").dataSync(),
      c.params.get("blocks.0.attn.qkv.weight").dataSync(),
    );
    const o1 = a.forward(codes, { rng: new Rng(10) });
    const o2 = a.forward(codes, { rng: new Rng(10) });
    const o3 = a.forward(codes, { rng: new Rng(11) });
    assert.equal(o1.loss.dataSync()[0], o2.loss.dataSync()[0]);
    assert.notDeepEqual(o1.mask.dataSync(), o3.mask.dataSync());
    tf.dispose([
      o1.loss,
      o1.logits,
      o1.mask,
      o2.loss,
      o2.logits,
      o2.mask,
      o3.loss,
      o3.logits,
      o3.mask,
    ]);
  } finally {
    codes.dispose();
    a.dispose();
    b.dispose();
    c.dispose();
  }
});

Deno.test("training mode: dropout draws from the rng (reproducible), eval mode has none", () => {
  const cfg = mtmTiny({ decoderDropout: 0.3, decoderAttnDropout: 0.3 });
  const model = new MtmModel(cfg, new Rng(0));
  const codes = codesFor(2, 8, cfg.codebookSize, 1);
  try {
    const plan = model.randomMasking(2, new Rng(5));
    const run = (training: boolean, seed: number) => {
      const o = model.forward(codes, { plan, training, rng: new Rng(seed) });
      const v = o.loss.dataSync()[0];
      tf.dispose([o.loss, o.logits, o.mask]);
      return v;
    };
    assert.equal(run(true, 1), run(true, 1));
    assert.notEqual(run(true, 1), run(true, 2));
    assert.equal(run(false, 1), run(false, 2));
    assert.notEqual(run(true, 1), run(false, 1));
  } finally {
    codes.dispose();
    model.dispose();
  }
});

Deno.test("numTensors stays flat over repeated training forward/backward passes", () => {
  const cfg = mtmTiny();
  const model = new MtmModel(cfg, new Rng(0));
  const codes = codesFor(2, 8, cfg.codebookSize, 1);
  const rng = new Rng(9);
  try {
    const step = () => {
      const { value, grads } = model.params.valueAndGrads(() =>
        model.forward(codes, { rng, training: true }).loss
      );
      assert.equal(grads.size, model.params.trainableVariables().length);
      assert.ok(!grads.has("pos_embed") && !grads.has("decoder_pos_embed"));
      tf.dispose([value, ...grads.values()]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    assert.equal(tf.memory().numTensors, before);
  } finally {
    codes.dispose();
    model.dispose();
  }
});

Deno.test("resolveMtmConfig: official defaults, unknown keys and inconsistent sizes refused", () => {
  const base = mtmVitBase();
  assert.equal(base.embedDim, 768);
  assert.equal(base.gridSide, 28);
  assert.equal(base.patchSize, 2);
  assert.equal(base.codebookSize, 391);
  assert.equal(base.tokenDim, 32);
  assert.equal(base.dropRatio, 0.4);
  assert.deepEqual(JSON.parse(JSON.stringify(base)), base);
  assert.throws(() => resolveMtmConfig({ embedDims: 3 } as never), /unknown field "embedDims"/);
  assert.throws(() => resolveMtmConfig({ gridSide: 28, patchSize: 3 }), RangeError);
  assert.throws(() => resolveMtmConfig({ embedDim: 100, numHeads: 3 }), RangeError);
  assert.throws(() => resolveMtmConfig({ depth: 1.5 }), TypeError);
  assert.throws(() => resolveMtmConfig({ dropRatio: 0.6 }), /dropped patches must be masked/);
  assert.throws(() => resolveMtmConfig({ decoderDropout: 1 }), RangeError);
});
