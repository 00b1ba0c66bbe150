import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { readSafetensorsFile, toFloat32, toInt32 } from "@lib/io";
import { Rng } from "@lib/random";
import { embNoise } from "@lib/adapters";
import { runTransform } from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";

const io = (await readSafetensorsFile(parityPath("transforms_io.safetensors"))).tensors;
const meta = JSON.parse(await Deno.readTextFile(parityPath("meta.json")));

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`embNoise with the recorded draws reproduces noise_out bit for bit (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    const { prob, scale, std } = meta.transforms.noise;
    const x = tf.tensor4d(toFloat32(io.get("emb")!), [4, 32, 32, 32]);
    const perm = toInt32(io.get("noise_perm")!);
    const out = embNoise({ prob, scale, std }).apply(x, {
      perm,
      count: Math.floor(4 * prob),
      channel: toFloat32(io.get("noise_channel")!),
      pixel: toFloat32(io.get("noise_pixel")!),
    });
    assert.deepEqual(await out.data(), toFloat32(io.get("noise_out")!));
    assert.deepEqual(Array.from(perm.subarray(2)).sort(), meta.transforms.noise.no_noise);
    tf.dispose([x, out]);
    assert.equal(tf.memory().numTensors, before);
  });
}

Deno.test("embNoise: floor(B*prob) samples get channel offsets ~N(0,scale^2) plus elements ~N(0,std^2)", async () => {
  await initBackend({ backend: "cpu" });
  const B = 7, C = 64, H = 8, W = 8, N = H * W;
  const x = tf.zeros([B, C, H, W]) as tf.Tensor4D;
  const t = embNoise({ prob: 0.5, scale: 0.5, std: 2 });
  assert.equal(t.description, "emb_noise(p=0.5, scale=0.5, std=2)");
  const { output, params } = runTransform(t, x, new Rng(12));
  assert.equal(params.count, 3);
  const chosen = new Set(Array.from(params.perm.subarray(0, 3)));
  const d = await output.data();
  let offSq = 0, resSq = 0, nOff = 0, nRes = 0;
  for (let b = 0; b < B; b++) {
    const slab = d.subarray(b * C * N, (b + 1) * C * N);
    if (!chosen.has(b)) {
      assert.ok(slab.every((v) => v === 0), `sample ${b} got noise`);
      assert.ok(params.channel.subarray(b * C, (b + 1) * C).every((v) => v === 0), "no draws");
      continue;
    }
    for (let c = 0; c < C; c++) {
      let m = 0;
      for (let k = 0; k < N; k++) m += slab[c * N + k];
      m /= N;
      // the channel mean is scale*z_c + (std/8)*noise; its offset part dominates
      offSq += (params.channel[b * C + c] * 0.5) ** 2;
      nOff++;
      for (let k = 0; k < N; k++) {
        resSq += (slab[c * N + k] - params.channel[b * C + c] * 0.5) ** 2;
        nRes++;
      }
      assert.ok(Math.abs(m - params.channel[b * C + c] * 0.5) < 5 * 2 / 8, "5 sd of a mean of 64");
    }
  }
  assert.ok(
    Math.abs(Math.sqrt(offSq / nOff) - 0.5) < 0.08,
    `channel sd ${Math.sqrt(offSq / nOff)}`,
  );
  assert.ok(Math.abs(Math.sqrt(resSq / nRes) - 2) < 0.05, `element sd ${Math.sqrt(resSq / nRes)}`);
  tf.dispose([x, output]);
});

Deno.test("embNoise: same seed same noise; prob 0 is the identity; no leaks", async () => {
  await initBackend({ backend: "cpu" });
  const before = tf.memory().numTensors;
  const x = tf.randomNormal([4, 3, 5, 5], 0, 1, "float32", 2) as tf.Tensor4D;
  const a = runTransform(embNoise(), x, new Rng(1));
  const b = runTransform(embNoise(), x, new Rng(1));
  assert.deepEqual(await a.output.data(), await b.output.data());
  const c = runTransform(embNoise(), x, new Rng(2));
  assert.notDeepEqual(await a.output.data(), await c.output.data());
  const id = runTransform(embNoise({ prob: 0 }), x, new Rng(1));
  assert.deepEqual(await id.output.data(), await x.data());
  tf.dispose([x, a.output, b.output, c.output, id.output]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("embNoise bad input: wrong shapes of draws and maps are named", async () => {
  await initBackend({ backend: "cpu" });
  const before = tf.memory().numTensors;
  const t = embNoise();
  const x = tf.zeros([2, 1, 2, 2]) as tf.Tensor4D;
  const perm = new Int32Array([1, 0]);
  assert.throws(
    () => t.apply(x, { perm, count: 1, channel: new Float32Array(3), pixel: new Float32Array(8) }),
    /expected channel draws as a Float32Array of 2/,
  );
  assert.throws(
    () => t.apply(x, { perm, count: 1, channel: new Float32Array(2), pixel: new Float32Array(7) }),
    /expected pixel draws as a Float32Array of 8/,
  );
  const xi = tf.zeros([2, 1, 2, 2], "int32");
  assert.throws(
    () => t.draw(xi as tf.Tensor4D, new Rng(0)),
    new TypeError(
      "Cannot use embNoise input: expected a [B, C, H, W] float32 tensor, got a int32 tensor of shape [2, 1, 2, 2]",
    ),
  );
  assert.throws(() => embNoise({ std: -1 }), RangeError);
  tf.dispose([x, xi]);
  assert.equal(tf.memory().numTensors, before);
});
