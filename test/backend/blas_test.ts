import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { activeBlas, describeBackend, initBackend, loadBlas, nativeOpsActive } from "@lib/backend";
import { attention, gelu, layerNorm, softmaxCrossEntropyRows } from "@lib/models";
import { Rng } from "@lib/random";

// These tests need a loadable BLAS (CI installs Debian's libopenblas0-pthread). Set
// SEITPP_BLAS=off to run the suite on a machine without one: they are then skipped.
const blasOff = Deno.env.get("SEITPP_BLAS") === "off";

interface Case {
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
  bias?: number[];
  activation?: "linear" | "relu" | "relu6" | "elu" | "leakyrelu" | "sigmoid" | "prelu";
  prelu?: number[];
}

/** Shapes tfjs accepts: rank 2-4, batch dims broadcast (1 or equal), any transposes. */
function randomCase(rng: Rng): Case {
  const m = rng.int(1, 40);
  const n = rng.int(1, 40);
  const k = rng.int(1, 40);
  const rank = rng.int(2, 5);
  const full = Array.from({ length: rank - 2 }, () => rng.int(1, 4));
  // Each side's batch dims: all of them, all ones, or a trailing part. (tfjs's cpu and wasm
  // kernels index broadcast batches modulo the flattened batch size, which differs from
  // broadcasting when a 1 precedes a larger dim, e.g. [3, 1] against [3, 2]; the BLAS kernel
  // broadcasts, and those shapes have their own test below.)
  const side = () => {
    const r = rng.uniform();
    return r < 0.5 ? full : r < 0.75 ? full.map(() => 1) : full.slice(rng.int(0, full.length + 1));
  };
  const aBatch = side();
  const bBatch = side();
  const transposeA = rng.uniform() < 0.5;
  const transposeB = rng.uniform() < 0.5;
  return {
    a: [...aBatch, ...(transposeA ? [k, m] : [m, k])],
    b: [...bBatch, ...(transposeB ? [n, k] : [k, n])],
    transposeA,
    transposeB,
  };
}

function values(shape: number[], rng: Rng): Float32Array {
  const n = shape.reduce((p, d) => p * d, 1);
  return Float32Array.from({ length: n }, () => rng.uniform() * 2 - 1);
}

/** Runs `c` on the active backend; returns the result's shape and values. */
async function run(c: Case, seed: number): Promise<{ shape: number[]; data: Float32Array }> {
  const rng = new Rng(seed);
  const before = tf.memory().numTensors;
  const y = tf.tidy(() => {
    const a = tf.tensor(values(c.a, rng), c.a);
    const b = tf.tensor(values(c.b, rng), c.b);
    if (c.bias === undefined && c.activation === undefined) {
      return tf.matMul(a, b, c.transposeA, c.transposeB);
    }
    return tf.fused.matMul({
      a,
      b,
      transposeA: c.transposeA,
      transposeB: c.transposeB,
      bias: c.bias === undefined ? undefined : tf.tensor(values(c.bias, rng), c.bias),
      activation: c.activation,
      preluActivationWeights: c.prelu === undefined
        ? undefined
        : tf.tensor(values(c.prelu, rng), c.prelu),
      leakyreluAlpha: 0.3,
    });
  });
  const data = (await y.data()) as Float32Array;
  const shape = y.shape;
  y.dispose();
  assert.equal(tf.memory().numTensors, before, "leaked tensors");
  return { shape, data };
}

async function compareWithCpu(cases: Case[]): Promise<void> {
  await initBackend({ backend: "cpu" });
  const want = [];
  for (let i = 0; i < cases.length; i++) {
    want.push(
      await run(cases[i], 1000 + i).catch((e) => {
        throw new Error(`cpu, case ${JSON.stringify(cases[i])}: ${e.message}`);
      }),
    );
  }
  const info = await initBackend({ backend: "wasm" });
  assert.ok(info.blas !== undefined, `no BLAS on wasm: ${describeBackend(info)}`);
  for (let i = 0; i < cases.length; i++) {
    const got = await run(cases[i], 1000 + i);
    const label = JSON.stringify(cases[i]);
    assert.deepEqual(got.shape, want[i].shape, label);
    for (let j = 0; j < got.data.length; j++) {
      const w = want[i].data[j];
      assert.ok(
        Math.abs(got.data[j] - w) <= 1e-5 + 1e-5 * Math.abs(w),
        `${label}: element ${j} is ${got.data[j]}, cpu gives ${w}`,
      );
    }
  }
}

Deno.test({
  name: "BLAS matMul matches the cpu backend on 60 random shapes (transposes, batch broadcast)",
  ignore: blasOff,
  fn: async () => {
    const rng = new Rng(7);
    await compareWithCpu(Array.from({ length: 60 }, () => randomCase(rng)));
  },
});

Deno.test({
  name: "BLAS _FusedMatMul matches the cpu backend: bias broadcasts and every activation",
  ignore: blasOff,
  fn: async () => {
    const rng = new Rng(8);
    const cases: Case[] = [];
    const activations = [
      "linear",
      "relu",
      "relu6",
      "elu",
      "leakyrelu",
      "sigmoid",
      "prelu",
    ] as const;
    for (let i = 0; i < 28; i++) {
      // tf.fused.matMul flattens each side's batch dims before broadcasting: keep them equal
      // or give b none.
      const c = randomCase(rng);
      if (JSON.stringify(c.a.slice(0, -2)) !== JSON.stringify(c.b.slice(0, -2))) {
        c.b = c.b.slice(-2);
      }
      const rank = Math.max(c.a.length, c.b.length);
      const m = c.transposeA ? c.a[c.a.length - 1] : c.a[c.a.length - 2];
      const n = c.transposeB ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
      // bias: [N], [1], [M, 1], [M, N] (and no bias for a quarter of them)
      const biasShapes = [[n], [1], [m, 1], [m, n], undefined];
      const bias = biasShapes[i % biasShapes.length];
      const activation = activations[i % activations.length];
      cases.push({
        ...c,
        bias: bias && bias.length <= rank ? bias : [n],
        activation,
        prelu: activation === "prelu" ? (i % 2 === 0 ? [n] : [m, n]) : undefined,
      });
    }
    await compareWithCpu(cases);
  },
});

Deno.test({
  name: "BLAS matMul handles empty and K = 0 products",
  ignore: blasOff,
  fn: async () => {
    await initBackend({ backend: "wasm" });
    assert.ok(activeBlas() !== undefined);
    const z = tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 4]));
    assert.deepEqual(Array.from(await z.data()), new Array(12).fill(0));
    const e = tf.matMul(tf.zeros([2, 0, 5]), tf.zeros([2, 5, 3]));
    assert.deepEqual(e.shape, [2, 0, 3]);
    tf.dispose([z, e]);
  },
});

Deno.test({
  name: "BLAS matMul broadcasts batch dims like numpy ([3, 2, M, K] x [3, 1, K, N])",
  ignore: blasOff,
  fn: async () => {
    await initBackend({ backend: "wasm" });
    const rng = new Rng(5);
    const a = tf.tensor4d(values([3, 2, 5, 4], rng), [3, 2, 5, 4]);
    const b = tf.tensor4d(values([3, 1, 4, 6], rng), [3, 1, 4, 6]);
    const got = tf.matMul(a, b);
    // per batch (i, j): a[i, j] b[i, 0], as 2-D matMuls
    const want = tf.stack(
      Array.from({ length: 3 }, (_, i) =>
        tf.stack(
          Array.from({ length: 2 }, (_, j) =>
            tf.matMul(
              a.slice([i, j], [1, 1]).reshape([5, 4]),
              b.slice([i, 0], [1, 1]).reshape([4, 6]),
            )),
        )),
    );
    assert.deepEqual(got.shape, [3, 2, 5, 6]);
    const err = await tf.max(tf.abs(tf.sub(got, want))).data();
    assert.ok(err[0] < 1e-5, `max error ${err[0]}`);
    tf.dispose([a, b, got, want]);
  },
});

Deno.test({
  name: "BLAS matMul stays correct when the wasm memory grows between calls",
  ignore: blasOff,
  fn: async () => {
    await initBackend({ backend: "wasm" });
    const a = tf.tensor2d(values([64, 48], new Rng(3)), [64, 48]);
    const b = tf.tensor2d(values([48, 32], new Rng(4)), [48, 32]);
    const first = await tf.matMul(a, b).data();
    // ~400 MB of live tensors force the heap to grow (and its ArrayBuffer to be replaced)
    const big = Array.from({ length: 4 }, () => tf.zeros([25_000_000]));
    const again = tf.matMul(a, b);
    assert.deepEqual(await again.data(), first);
    tf.dispose([a, b, again, ...big]);
  },
});

Deno.test("blas: off loads nothing and names tfjs-wasm's own matMul", async () => {
  const info = await initBackend({ backend: "wasm", blas: "off" });
  assert.equal(info.blas, undefined);
  assert.equal(info.blasSkipped, undefined);
  assert.equal(activeBlas(), undefined);
  assert.match(describeBackend(info), /matMul: wasm's own, BLAS off/);
  assert.deepEqual(loadBlas({ blas: "off" }), { reason: undefined });
  await initBackend({ backend: "wasm" }); // leave the default for the other tests
});

Deno.test("loadBlas refuses a negative thread count", () => {
  assert.throws(() => loadBlas({ threads: -1 }), RangeError);
});

async function child(args: string[], env: Record<string, string>) {
  const code = `
    import * as tf from "@tensorflow/tfjs";
    import { describeBackend, initBackend } from "@lib/backend";
    const info = await initBackend({ backend: "wasm" });
    await initBackend({ backend: "wasm" }); // a second init must not repeat the line
    const y = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[1], [1]]));
    console.log(describeBackend(info), JSON.stringify(Array.from(await y.data())));
  `;
  const file = await Deno.makeTempFile({
    dir: new URL("..", import.meta.url).pathname,
    suffix: ".ts",
  });
  try {
    await Deno.writeTextFile(file, code);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...args, file],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("a BLAS override that does not load: plain wasm runs and one line says why", async () => {
  const r = await child(["-A"], { SEITPP_BLAS: "/nonexistent/libopenblas.so.0" });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[3,7\]/);
  const lines = r.stderr.split("\n").filter((l) => l.includes("without a BLAS"));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /cannot load "\/nonexistent\/libopenblas\.so\.0" \(from SEITPP_BLAS\)/);
  assert.match(r.stdout, /matMul: wasm's own; no BLAS/);
});

Deno.test("without --allow-ffi: plain wasm runs and one line says why", async () => {
  const r = await child(["--allow-read", "--allow-env"], {});
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[3,7\]/);
  const lines = r.stderr.split("\n").filter((l) => l.includes("without a BLAS"));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /FFI is not permitted/);
});

Deno.test({
  name:
    "native attention (wasm + BLAS) matches the cpu backend with dropout: output and qkv gradient",
  ignore: blasOff,
  fn: async () => {
    const [batch, seq, heads, c] = [3, 7, 2, 8];
    /** loss = sum(attention(qkv) * w) with attention dropout 0.3; returns [loss, dloss/dqkv]. */
    const lossAndGrad = async () => {
      const qkv = tf.tensor2d(values([batch * seq, 3 * c], new Rng(12)), [batch * seq, 3 * c]);
      const w = tf.tensor2d(values([batch * seq, c], new Rng(13)), [batch * seq, c]);
      const rng = new Rng(11);
      const before = tf.memory().numTensors;
      const f = (x: tf.Tensor) =>
        tf.sum(tf.mul(attention(x as tf.Tensor2D, batch, seq, heads, { dropout: 0.3, rng }), w));
      const { value, grad } = tf.valueAndGrad(f)(qkv);
      const out = [await value.data(), await grad.data()];
      tf.dispose([value, grad]);
      assert.equal(tf.memory().numTensors, before, "leaked tensors");
      tf.dispose([qkv, w]);
      return out;
    };
    await initBackend({ backend: "cpu" });
    const want = await lossAndGrad();
    await initBackend({ backend: "wasm" });
    assert.ok(nativeOpsActive());
    const got = await lossAndGrad();
    for (let k = 0; k < 2; k++) {
      for (let i = 0; i < want[k].length; i++) {
        assert.ok(
          Math.abs(got[k][i] - want[k][i]) <= 1e-5 + 1e-4 * Math.abs(want[k][i]),
          `${k === 0 ? "loss" : "grad"} element ${i}: ${got[k][i]} vs cpu ${want[k][i]}`,
        );
      }
    }
  },
});

Deno.test({
  name: "native GELU (wasm + BLAS) matches the cpu backend: value and gradient",
  ignore: blasOff,
  fn: async () => {
    const run = async () => {
      const x = tf.tensor2d(values([50, 40], new Rng(21)).map((v) => 6 * v), [50, 40]);
      const w = tf.tensor2d(values([50, 40], new Rng(22)), [50, 40]);
      const { value, grad } = tf.valueAndGrad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), w)))(x);
      const y = gelu(x);
      const out = [await y.data(), await grad.data(), await value.data()];
      tf.dispose([x, w, y, value, grad]);
      return out;
    };
    await initBackend({ backend: "cpu" });
    const want = await run();
    await initBackend({ backend: "wasm" });
    assert.ok(nativeOpsActive());
    const before = tf.memory().numTensors;
    const got = await run();
    assert.equal(tf.memory().numTensors, before, "leaked tensors");
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < want[k].length; i++) {
        assert.ok(
          Math.abs(got[k][i] - want[k][i]) <= 1e-6 + 1e-5 * Math.abs(want[k][i]),
          `output ${k} element ${i}: ${got[k][i]} vs cpu ${want[k][i]}`,
        );
      }
    }
  },
});

Deno.test({
  name: "native LayerNorm (wasm + BLAS) matches the cpu backend: value and the three gradients",
  ignore: blasOff,
  fn: async () => {
    const run = async () => {
      const x = tf.tensor2d(values([30, 24], new Rng(31)).map((v) => 3 * v + 1), [30, 24]);
      const g = tf.tensor1d(values([24], new Rng(32)));
      const b = tf.tensor1d(values([24], new Rng(33)));
      const w = tf.tensor2d(values([30, 24], new Rng(34)), [30, 24]);
      const f = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, 1e-6), w));
      const { value, grads } = tf.valueAndGrads(f)([x, g, b]);
      const out = [await value.data(), ...(await Promise.all(grads.map((t) => t.data())))];
      tf.dispose([x, g, b, w, value, ...grads]);
      return out;
    };
    await initBackend({ backend: "cpu" });
    const want = await run();
    await initBackend({ backend: "wasm" });
    assert.ok(nativeOpsActive());
    const before = tf.memory().numTensors;
    const got = await run();
    assert.equal(tf.memory().numTensors, before, "leaked tensors");
    for (let k = 0; k < want.length; k++) {
      for (let i = 0; i < want[k].length; i++) {
        assert.ok(
          Math.abs(got[k][i] - want[k][i]) <= 1e-5 + 1e-4 * Math.abs(want[k][i]),
          `output ${k} element ${i}: ${got[k][i]} vs cpu ${want[k][i]}`,
        );
      }
    }
  },
});

Deno.test({
  name:
    "native softmax cross-entropy (wasm + BLAS) matches the cpu backend, with and without smoothing",
  ignore: blasOff,
  fn: async () => {
    const run = async (smoothing: number) => {
      const x = tf.tensor2d(values([40, 17], new Rng(41)).map((v) => 8 * v), [40, 17]);
      const t = tf.tensor1d(Int32Array.from({ length: 40 }, (_, i) => (i * 7) % 17), "int32");
      const w = tf.tensor1d(values([40], new Rng(42)));
      const f = (x: tf.Tensor) =>
        tf.sum(tf.mul(softmaxCrossEntropyRows(x as tf.Tensor2D, t, smoothing), w));
      const { value, grad } = tf.valueAndGrad(f)(x);
      const out = [await value.data(), await grad.data()];
      tf.dispose([x, t, w, value, grad]);
      return out;
    };
    for (const smoothing of [0, 0.1]) {
      await initBackend({ backend: "cpu" });
      const want = await run(smoothing);
      await initBackend({ backend: "wasm" });
      assert.ok(nativeOpsActive());
      const before = tf.memory().numTensors;
      const got = await run(smoothing);
      assert.equal(tf.memory().numTensors, before, "leaked tensors");
      for (let k = 0; k < want.length; k++) {
        for (let i = 0; i < want[k].length; i++) {
          assert.ok(
            Math.abs(got[k][i] - want[k][i]) <= 1e-5 + 1e-4 * Math.abs(want[k][i]),
            `smoothing ${smoothing}, output ${k} element ${i}: ${got[k][i]} vs cpu ${want[k][i]}`,
          );
        }
      }
    }
  },
});
