/**
 * The token classifier and the pixel ViT: shapes, loading from an MTM state dict,
 * training mode, gradients, config validation, leaks.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  classifierTiny,
  dropPathRates,
  MtmModel,
  mtmTiny,
  PixelVit,
  resolveClassifierConfig,
  TokenClassifier,
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

Deno.test("TokenClassifier.forward returns [B, numClasses] float32 logits; features [B, D]", () => {
  for (const globalPool of [true, false]) {
    const cfg = classifierTiny({ globalPool });
    const model = new TokenClassifier(cfg, new Rng(0));
    const codes = codesFor(3, 8, cfg.codebookSize, 1);
    try {
      const logits = model.forward(codes);
      assert.deepEqual(logits.shape, [3, 10]);
      assert.equal(logits.dtype, "float32");
      const feats = model.forwardFeatures(codes);
      assert.deepEqual(feats.shape, [3, cfg.embedDim]);
      tf.dispose([logits, feats]);
    } finally {
      codes.dispose();
      model.dispose();
    }
  }
});

Deno.test("loadFromMtm takes the encoder, reports the head missing and the decoder unexpected", () => {
  const mtm = new MtmModel(mtmTiny(), new Rng(1));
  const cls = new TokenClassifier(classifierTiny(), new Rng(2));
  try {
    const report = cls.loadFromMtm(mtm.params.stateDict());
    assert.deepEqual(report.missing, ["head.weight", "head.bias"]);
    assert.deepEqual(report.mismatchedShapes, []);
    assert.ok(report.unexpected.includes("mask_token_label"));
    assert.ok(report.unexpected.includes("decoder_blocks.0.attn.qkv.weight"));
    assert.ok(report.unexpected.includes("mlm_layer.fc.weight"));
    assert.ok(!report.unexpected.includes("blocks.0.attn.qkv.weight"));
    for (
      const name of ["blocks.0.mlp.fc1.weight", "pos_embed", "token_emb.word_embeddings.weight"]
    ) {
      assert.deepEqual(cls.params.get(name).dataSync(), mtm.params.get(name).dataSync(), name);
    }
    // Another grid: the position table does not fit and is reported, not loaded.
    const other = new TokenClassifier(classifierTiny({ gridSide: 12 }), new Rng(3));
    const r2 = other.loadFromMtm(mtm.params.stateDict());
    assert.deepEqual(r2.mismatchedShapes, ["pos_embed: got [1, 17, 32], expected [1, 37, 32]"]);
    other.dispose();
  } finally {
    mtm.dispose();
    cls.dispose();
  }
});

Deno.test("classifier training mode: drop path / dropout reproducible from the rng; gradients for every parameter; no leaks", () => {
  const cfg = classifierTiny({ depth: 3, dropPath: 0.5 });
  const model = new TokenClassifier(cfg, new Rng(0));
  const codes = codesFor(4, 8, cfg.codebookSize, 1);
  const labels = tf.oneHot(tf.tensor1d([1, 2, 3, 4], "int32"), 10).toFloat() as tf.Tensor2D;
  try {
    const loss = (training: boolean, seed: number) =>
      tf.tidy(() =>
        tf.losses.softmaxCrossEntropy(
          labels,
          model.forward(codes, { training, rng: new Rng(seed) }),
        )
          .dataSync()[0]
      );
    assert.equal(loss(true, 1), loss(true, 1));
    assert.notEqual(loss(true, 1), loss(true, 2));
    assert.equal(loss(false, 1), loss(false, 2));
    const rng = new Rng(5);
    const step = () => {
      const { value, grads } = model.params.valueAndGrads(() =>
        tf.losses.softmaxCrossEntropy(
          labels,
          model.forward(codes, { training: true, rng }),
        ) as tf.Scalar
      );
      assert.deepEqual([...grads.keys()].sort(), model.params.names().sort());
      tf.dispose([value, ...grads.values()]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 4; i++) step();
    assert.equal(tf.memory().numTensors, before);
  } finally {
    tf.dispose([codes, labels]);
    model.dispose();
  }
});

Deno.test("dropPathRates is timm's linspace(0, rate, depth)", () => {
  assert.deepEqual(dropPathRates(0.1, 1), [0]);
  const r = dropPathRates(0.1, 5);
  assert.equal(r.length, 5);
  assert.equal(r[0], 0);
  assert.ok(Math.abs(r[4] - 0.1) < 1e-12 && Math.abs(r[2] - 0.05) < 1e-12);
});

Deno.test("resolveClassifierConfig refuses unknown fields and bad values", () => {
  assert.throws(() => resolveClassifierConfig({ classes: 3 } as never), TypeError);
  assert.throws(() => resolveClassifierConfig({ dropPath: -0.1 }), RangeError);
  assert.throws(() => resolveClassifierConfig({ linearInit: "he" as never }), TypeError);
  assert.equal(resolveClassifierConfig().globalPool, true);
});

Deno.test("PixelVit: [B, C, H, W] -> [B, classes]; gradients reach every parameter; bad shapes refused", () => {
  const model = new PixelVit(
    {
      imageSize: 16,
      channels: 3,
      patchSize: 4,
      embedDim: 32,
      depth: 2,
      numHeads: 2,
      numClasses: 5,
    },
    new Rng(0),
  );
  const images = tf.randomUniform([2, 3, 16, 16], 0, 1, "float32", 1) as tf.Tensor4D;
  try {
    const logits = model.forward(images);
    assert.deepEqual(logits.shape, [2, 5]);
    logits.dispose();
    const before = tf.memory().numTensors;
    const { value, grads } = model.params.valueAndGrads(() =>
      tf.mean(tf.square(model.forward(images, { training: true, rng: new Rng(1) })))
    );
    assert.deepEqual([...grads.keys()].sort(), model.params.names().sort());
    tf.dispose([value, ...grads.values()]);
    assert.equal(tf.memory().numTensors, before);
    const wrong = tf.zeros([2, 1, 16, 16]) as tf.Tensor4D;
    assert.throws(() => model.forward(wrong), /expected \[B, 3, 16, 16\]/);
    wrong.dispose();
  } finally {
    images.dispose();
    model.dispose();
  }
});
