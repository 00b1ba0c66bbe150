import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { readSafetensorsFile, toInt32 } from "@lib/io";
import { CodeQuantizer, convertToCodes, embedCodes } from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";

const codebook = (await readSafetensorsFile(parityPath("codebook.safetensors"))).tensors.get(
  "codebook",
)!;
const io = (await readSafetensorsFile(parityPath("tokenadapt_io.safetensors"))).tensors;

function toTensor4(name: string): tf.Tensor4D {
  const t = io.get(name)!;
  return tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number]);
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`convertToCodes equals the reference's c2c_codes exactly (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    const q = CodeQuantizer.from(codebook);
    const x = toTensor4("c2c_input");
    const codes = q.toCodes(x);
    assert.deepEqual(codes.shape, [2, 28, 28]);
    assert.equal(codes.dtype, "int32");
    assert.deepEqual(Array.from(await codes.data()), Array.from(toInt32(io.get("c2c_codes")!)));
    tf.dispose([x, codes]);
    q.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
}

Deno.test("embedCodes gives the reference's input_emb32 bit for bit, from host or tensor codes", async () => {
  await initBackend({ backend: "cpu" });
  const before = tf.memory().numTensors;
  const ids = io.get("input_ids32")!; // int64 host tensor
  const want = io.get("input_emb32")!.data as Float32Array;
  const fromHost = embedCodes(ids, codebook);
  assert.deepEqual(fromHost.shape, [2, 32, 32, 32]);
  assert.deepEqual(await fromHost.data(), want);
  const idsT = tf.tensor3d(toInt32(ids), [2, 32, 32], "int32");
  const q = CodeQuantizer.from(codebook);
  const fromTensor = q.embed(idsT);
  assert.deepEqual(await fromTensor.data(), want);
  // and re-quantizing the embedding gives the codes back (no two rows are parallel)
  const back = q.toCodes(fromTensor);
  assert.deepEqual(Array.from(await back.data()), Array.from(toInt32(ids)));
  tf.dispose([fromHost, idsT, fromTensor, back]);
  q.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("convertToCodes: cosine, not Euclidean; ties go to the lowest index", async () => {
  await initBackend({ backend: "cpu" });
  // (1, 0.3) is Euclidean-closest to row 1 but at the smallest angle to row 0
  const cb1 = tf.tensor2d([[10, 0], [0.5, 0.5]]);
  const x1 = tf.tensor4d([1, 0.3], [1, 2, 1, 1]);
  const c1 = convertToCodes(x1, cb1);
  assert.deepEqual(Array.from(await c1.data()), [0]);
  // all normalized rows are exact unit vectors; rows 0/1 and 2/3 are parallel (ties)
  const cb = tf.tensor2d([[1, 0], [3, 0], [0, 2], [0, 1]]);
  // vectors (5, 0.1), (0, 0), (0, 7), (7, -1) as [1, 2, 2, 2] channels-first
  const x = tf.tensor4d([5, 0, 0, 7, 0.1, 0, 7, -1], [1, 2, 2, 2]);
  const codes = convertToCodes(x, cb);
  // the zero vector ties with every row (F.normalize leaves it 0): lowest index too
  assert.deepEqual(Array.from(await codes.data()), [0, 0, 2, 0]);
  tf.dispose([cb1, x1, c1, cb, x, codes]);
});

Deno.test("convertToCodes of a 32x28x28 batch is fast on wasm (matMul + argMax)", async () => {
  await initBackend({ backend: "wasm" });
  const q = CodeQuantizer.from(codebook);
  const x = tf.randomNormal([32, 32, 28, 28], 0, 1, "float32", 7) as tf.Tensor4D;
  const warm = q.toCodes(x);
  await warm.data();
  warm.dispose();
  const times: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    const c = q.toCodes(x);
    await c.data();
    times.push(performance.now() - t0);
    c.dispose();
  }
  tf.dispose(x);
  q.dispose();
  // measured about 40 ms here; a generous bound that still catches a per-position loop
  assert.ok(Math.min(...times) < 1000, `took ${times.map((t) => t.toFixed(0)).join(", ")} ms`);
});

Deno.test("bad input: TypeError/RangeError naming the value", async () => {
  await initBackend({ backend: "cpu" });
  const before = tf.memory().numTensors;
  const q = CodeQuantizer.from(codebook);
  const x3 = tf.zeros([2, 32, 28]);
  assert.throws(
    () => q.toCodes(x3 as unknown as tf.Tensor4D),
    new TypeError(
      "Cannot convert to codes: expected x as a [B, d, H, W] float32 tensor, got a float32 tensor of shape [2, 32, 28]",
    ),
  );
  const x16 = tf.zeros([1, 16, 2, 2]) as tf.Tensor4D;
  assert.throws(() => q.toCodes(x16), /x \[1, 16, 2, 2\] has 16 channels, the codebook d = 32/);
  const xi = tf.zeros([1, 32, 2, 2], "int32") as tf.Tensor4D;
  assert.throws(() => q.toCodes(xi), /got a int32 tensor of shape \[1, 32, 2, 2\]/);
  const cf = tf.zeros([1, 2, 2], "float32") as tf.Tensor3D;
  assert.throws(() => q.embed(cf), /expected a \[B, H, W\] int32 tensor.*got a float32 tensor/);
  assert.throws(
    () => q.embed({ dtype: "int32", shape: [1, 1, 2], data: new Int32Array([3, 391]) }),
    new RangeError("Cannot embed code 391 at flat index 1: the codebook has codes 0..390"),
  );
  assert.throws(
    () => q.embed({ dtype: "float32", shape: [1, 1, 1], data: new Float32Array([0]) }),
    /got a float32 host tensor of shape \[1, 1, 1\]/,
  );
  assert.throws(
    () => CodeQuantizer.from({ dtype: "int32", shape: [3, 2], data: new Int32Array(6) }),
    new TypeError("Cannot use a int32 codebook: expected a float dtype"),
  );
  assert.throws(
    () => CodeQuantizer.from({ dtype: "float32", shape: [6], data: new Float32Array(6) }),
    /Cannot use a codebook of shape \[6\]: expected \[K, d\]/,
  );
  q.dispose();
  assert.throws(() => q.toCodes(x16), /after dispose/);
  tf.dispose([x3, x16, xi, cf]);
  assert.equal(tf.memory().numTensors, before);
});
