import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { readSafetensorsFile, toFloat32, toInt32 } from "@lib/io";
import { Rng } from "@lib/random";
import { colorAdapt } from "@lib/adapters";
import { runTransform } from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";

const io = (await readSafetensorsFile(parityPath("transforms_io.safetensors"))).tensors;

function within(got: ArrayLike<number>, ref: Float32Array, rtol = 1e-4, atolCoef = 1e-4): number {
  let scale = 1;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    worst = Math.max(
      worst,
      Math.abs(got[i] - ref[i]) / (atolCoef * scale + rtol * Math.abs(ref[i])),
    );
  }
  return worst;
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`colorAdapt with the recorded perm reproduces coloradapt_out (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    const x = tf.tensor4d(toFloat32(io.get("emb")!), [4, 32, 32, 32]);
    const perm = toInt32(io.get("coloradapt_perm")!);
    const out = colorAdapt({ prob: 0.5 }).apply(x, { perm, count: 2 });
    const got = await out.data();
    const worst = within(got, toFloat32(io.get("coloradapt_out")!));
    assert.ok(worst <= 1, `worst ratio ${worst}`);
    // samples perm[2:] are untouched bit for bit
    const xd = await x.data();
    for (const b of perm.subarray(2)) {
      const s = b * 32 * 1024;
      assert.deepEqual(got.subarray(s, s + 32 * 1024), xd.subarray(s, s + 32 * 1024));
    }
    tf.dispose([x, out]);
    assert.equal(tf.memory().numTensors, before);
  });
}

Deno.test("colorAdapt gives replaced samples the partner's mean and unbiased std per channel", async () => {
  await initBackend({ backend: "cpu" });
  const rng = new Rng(3);
  const B = 5, C = 3, H = 4, W = 6, N = H * W;
  const data = new Float32Array(B * C * N);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const mu = rng.uniformIn(-3, 3), sd = rng.uniformIn(0.2, 4);
      for (let k = 0; k < N; k++) data[(b * C + c) * N + k] = mu + sd * rng.normal();
    }
  }
  const stats = (d: ArrayLike<number>, b: number, c: number) => {
    const o = (b * C + c) * N;
    let m = 0;
    for (let k = 0; k < N; k++) m += d[o + k];
    m /= N;
    let v = 0;
    for (let k = 0; k < N; k++) v += (d[o + k] - m) ** 2;
    return [m, Math.sqrt(v / (N - 1))];
  };
  const x = tf.tensor4d(data, [B, C, H, W]);
  const t = colorAdapt();
  assert.equal(t.description, "color_adapt(p=0.5)");
  const { output, params } = runTransform(t, x, new Rng(9));
  assert.equal(params.count, 2); // floor(5 * 0.5)
  const got = await output.data();
  const chosen = new Set(Array.from(params.perm.subarray(0, 2)));
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const [m, s] = stats(got, b, c);
      const [wm, ws] = chosen.has(b) ? stats(data, B - 1 - b, c) : stats(data, b, c);
      assert.ok(
        Math.abs(m - wm) < 1e-4 && Math.abs(s - ws) < 1e-4,
        `b ${b} c ${c}: ${m},${s} vs ${wm},${ws}`,
      );
    }
  }
  tf.dispose([x, output]);
});

Deno.test("colorAdapt: same seed same output; prob 0 is the identity; eps avoids NaN on a flat channel", async () => {
  await initBackend({ backend: "cpu" });
  const before = tf.memory().numTensors;
  const x = tf.randomNormal([6, 2, 3, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  const a = runTransform(colorAdapt(), x, new Rng(5));
  const b = runTransform(colorAdapt(), x, new Rng(5));
  assert.deepEqual(a.params, b.params);
  assert.deepEqual(await a.output.data(), await b.output.data());
  const id = runTransform(colorAdapt({ prob: 0 }), x, new Rng(5));
  assert.deepEqual(await id.output.data(), await x.data());
  // sample 0 is constant: its own std is 0 -> the reference's formula gives NaN; eps fixes it
  const flat = tf.tensor4d([1, 1, 1, 1, -0, 1, 2, 3], [2, 1, 2, 2]);
  const p = { perm: new Int32Array([0, 1]), count: 1 };
  const nan = colorAdapt().apply(flat, p);
  assert.ok((await nan.data()).subarray(0, 4).every(Number.isNaN));
  const ok = colorAdapt({ eps: 1e-5 }).apply(flat, p);
  // (x - mu) = 0 everywhere, so sample 0 becomes the partner's mean 1.5
  assert.deepEqual(Array.from((await ok.data()).subarray(0, 4)), [1.5, 1.5, 1.5, 1.5]);
  // the unchosen sample is returned bit for bit, its -0 included
  assert.ok(Object.is((await ok.data())[4], -0) && Object.is((await nan.data())[4], -0));
  assert.deepEqual(Array.from((await nan.data()).subarray(4)), [-0, 1, 2, 3]);
  tf.dispose([x, a.output, b.output, id.output, flat, nan, ok]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("colorAdapt bad input: TypeError/RangeError naming the value", async () => {
  await initBackend({ backend: "cpu" });
  const before = tf.memory().numTensors;
  const t = colorAdapt();
  const x3 = tf.zeros([2, 3, 4]);
  assert.throws(
    () => t.draw(x3 as unknown as tf.Tensor4D, new Rng(0)),
    new TypeError(
      "Cannot use colorAdapt input: expected a [B, C, H, W] float32 tensor, got a float32 tensor of shape [2, 3, 4]",
    ),
  );
  const x = tf.zeros([2, 1, 2, 2]) as tf.Tensor4D;
  assert.throws(
    () => t.apply(x, { perm: new Int32Array([0, 0]), count: 1 }),
    new RangeError("Cannot apply colorAdapt: perm [0,0] is not a permutation"),
  );
  assert.throws(
    () => t.apply(x, { perm: new Int32Array([0]), count: 1 }),
    /perm a Int32Array|of length 1/,
  );
  assert.throws(() => t.apply(x, { perm: new Int32Array([0, 1]), count: 3 }), /count 3/);
  const one = tf.zeros([2, 1, 1, 1]) as tf.Tensor4D;
  assert.throws(() => t.apply(one, { perm: new Int32Array([0, 1]), count: 1 }), /needs H\*W >= 2/);
  assert.throws(() => colorAdapt({ prob: -0.1 }), /prob = -0.1/);
  assert.throws(() => colorAdapt({ eps: -1 }), RangeError);
  tf.dispose([x3, x, one]);
  assert.equal(tf.memory().numTensors, before);
});
