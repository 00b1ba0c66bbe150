import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { Rng } from "@lib/random";
import {
  resolveTokenizerConfig,
  resolveTokenizerTrainConfig,
  tokenizerParamShapes,
  VqTokenizer,
} from "@lib/tokenizer";

const TINY = { widths: [4, 8, 8], codebookSize: 16, codeDim: 8 };

Deno.test("resolveTokenizerConfig fills defaults per downsampling factor and refuses bad values", () => {
  const c4 = resolveTokenizerConfig();
  assert.equal(c4.downsample, 4);
  assert.deepEqual(c4.widths, [16, 32, 64]);
  assert.deepEqual(c4.encoderBlocks, [0, 1, 1]);
  const c2 = resolveTokenizerConfig({ downsample: 2, encoderBlocks: 2 });
  assert.deepEqual(c2.widths, [16, 32]);
  assert.deepEqual(c2.encoderBlocks, [2, 2]);
  assert.equal(resolveTokenizerConfig({ downsample: 8 }).widths.length, 4);
  assert.throws(() => resolveTokenizerConfig({ downsmaple: 4 } as never), {
    name: "TypeError",
    message: /Unknown tokenizer config key "downsmaple"/,
  });
  assert.throws(() => resolveTokenizerConfig({ downsample: 3 }), {
    name: "RangeError",
    message: "downsample must be 2, 4 or 8, got 3",
  });
  assert.throws(() => resolveTokenizerConfig({ downsample: 2, widths: [8, 8, 8] }), {
    name: "RangeError",
    message: /widths must list 2 widths for downsample 2/,
  });
  assert.throws(() => resolveTokenizerConfig({ inputSize: 29 }), RangeError);
  assert.throws(() => resolveTokenizerTrainConfig({ lr: -1 }), {
    name: "RangeError",
    message: /lr/,
  });
  assert.throws(() => resolveTokenizerTrainConfig({ step: 3 } as never), TypeError);
});

for (const backend of ["cpu", "wasm"] as const) {
  for (const downsample of [2, 4]) {
    Deno.test(`VqTokenizer ${downsample}x on ${backend}: shapes, dtypes, 0..255 int32 = 0..1 float32, no leaks`, async () => {
      await initBackend({ backend });
      const widths = downsample === 4 ? TINY.widths : TINY.widths.slice(0, 2);
      const cfg = resolveTokenizerConfig({ ...TINY, widths, downsample });
      const tok = VqTokenizer.create(cfg, new Rng(3));
      const n = 32 / downsample;
      const rng = new Rng(9);
      const pix = Int32Array.from({ length: 3 * 28 * 28 }, () => rng.int(0, 256));
      const before = tf.memory().numTensors;
      for (let rep = 0; rep < 3; rep++) {
        const a = tf.tensor3d(pix, [3, 28, 28], "int32");
        const b = tf.tidy(() => tf.div(tf.cast(a, "float32"), 255).reshape([3, 1, 28, 28]));
        const ca = tok.encode(a), cb = tok.encode(b as tf.Tensor4D);
        assert.deepEqual(ca.shape, [3, n, n]);
        assert.equal(ca.dtype, "int32");
        assert.deepEqual(Array.from(ca.dataSync()), Array.from(cb.dataSync()));
        const codes = ca.dataSync();
        assert.ok(codes.every((c) => c >= 0 && c < 16));
        const img = tok.decode(ca);
        assert.deepEqual(img.shape, [3, 1, 28, 28]);
        assert.equal(img.dtype, "float32");
        const v = img.dataSync();
        assert.ok(v.every((p) => p >= 0 && p <= 1));
        tf.dispose([a, b, ca, cb, img]);
      }
      assert.equal(tf.memory().numTensors, before, "encode/decode leak no tensors");
      tok.dispose();
    });
  }
}

Deno.test("VqTokenizer.create is seeded: same seed, same weights and codes; other seed differs", async () => {
  await initBackend({ backend: "cpu" });
  const cfg = resolveTokenizerConfig(TINY);
  const before = tf.memory().numTensors;
  const t1 = VqTokenizer.create(cfg, new Rng(5));
  const t2 = VqTokenizer.create(cfg, new Rng(5));
  const t3 = VqTokenizer.create(cfg, new Rng(6));
  const w = (t: VqTokenizer) => Array.from(t.trainableVariables()[0].dataSync());
  assert.deepEqual(w(t1), w(t2));
  assert.notDeepEqual(w(t1), w(t3));
  const x = tf.randomUniform([2, 28, 28], 0, 1, "float32", 1) as tf.Tensor3D;
  const [c1, c2] = [t1.encode(x), t2.encode(x)];
  assert.deepEqual(Array.from(c1.dataSync()), Array.from(c2.dataSync()));
  tf.dispose([x, c1, c2]);
  [t1, t2, t3].forEach((t) => t.dispose());
  assert.equal(tf.memory().numTensors, before, "create + dispose leaves nothing behind");
});

Deno.test("parameter names are stable and split into enc.* and dec.*", () => {
  const cfg = resolveTokenizerConfig({
    ...TINY,
    encoderBlocks: [0, 1, 1],
    decoderBlocks: [1, 1, 2],
  });
  const names = tokenizerParamShapes(cfg).map((p) => p.name);
  assert.equal(names[0], "enc.stem.w");
  assert.ok(names.includes("dec.l2.b1.c2.w"));
  assert.ok(!names.includes("enc.l0.b0.c1.w"));
  assert.ok(names.every((n) => n.startsWith("enc.") || n.startsWith("dec.")));
  assert.deepEqual(tokenizerParamShapes(cfg).find((p) => p.name === "enc.down0.w")!.shape, [16, 8]);
});

Deno.test("encode refuses images of another size, rank, dtype or channel count with typed errors", async () => {
  await initBackend({ backend: "cpu" });
  const tok = VqTokenizer.create(resolveTokenizerConfig(TINY), new Rng(0));
  const before = tf.memory().numTensors;
  const cases: [tf.Tensor, RegExp][] = [
    [tf.zeros([2, 32, 32], "int32"), /takes 28x28 images, got 32x32/],
    [tf.zeros([2, 3, 28, 28], "int32"), /takes 1 channel/],
    [tf.zeros([28, 28], "int32"), /expected \[B,H,W\] or \[B,C,H,W\]/],
    [tf.zeros([1, 28, 28], "bool"), /dtype bool/],
  ];
  for (const [x, msg] of cases) {
    assert.throws(() => tok.encode(x as tf.Tensor3D), { name: "TypeError", message: msg });
    x.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  const bad = tf.tensor3d(new Int32Array(64).fill(16), [1, 8, 8], "int32");
  assert.throws(() => tok.decode(bad), {
    name: "RangeError",
    message: "Cannot decode code 16 at record 0, position 0: the codebook has 16 codes",
  });
  const wrong = tf.zeros([1, 4, 4], "int32") as tf.Tensor3D;
  assert.throws(() => tok.decode(wrong), { name: "TypeError", message: /expected \[B, 8, 8\]/ });
  tf.dispose([bad, wrong]);
  assert.equal(tf.memory().numTensors, before);
  tok.dispose();
});
