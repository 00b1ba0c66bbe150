import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { Fixture, SECTIONS } from "@lib/parity";
import { Rng } from "@lib/random";
import { AdamW, addWeightDecay, cosineLr } from "@lib/train";
import { canFuseAdamW } from "../../lib/train/engine/fused_adamw.ts";
import { activeWasm, heapMemory } from "../../lib/train/engine/_wasm_heap.ts";
import { adamwSimd } from "../../lib/train/engine/_adamw_simd.ts";
import { PARITY_DIR } from "../_support/fixtures.ts";

// The fused step exists for wasm only; the BLAS is not involved (no matMul here).
await initBackend({ backend: "wasm", blas: "off" });

/** Shapes no fixture uses, with 1-D / bias parameters that the grouping leaves undecayed. */
const SHAPES: [string, number[]][] = [
  ["embed.weight", [37, 13]],
  ["blocks.0.attn.qkv.weight", [39, 13]],
  ["blocks.0.attn.qkv.bias", [39]],
  ["blocks.0.norm1.weight", [13]],
  ["head.weight", [5, 13, 3]],
  ["head.bias", [1, 1, 7]],
  ["scalar_like", [1]],
];

function makeParams(rng: Rng): Map<string, tf.Variable> {
  return new Map(SHAPES.map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => rng.uniformIn(-2, 2));
    return [name, tf.tidy(() => tf.variable(tf.tensor(data, shape)))];
  }));
}

function optimizer(params: Map<string, tf.Variable>, fused: boolean): AdamW {
  const groups = addWeightDecay(
    SHAPES.map(([name, shape]) => ({ name, shape, trainable: true })),
    0.07,
  );
  return new AdamW(
    groups.settings.map((s, i) => ({
      name: s.name,
      variable: params.get(s.name)!,
      weightDecay: s.weightDecay,
      lrScale: [1, 0.5, 0.25, 1, 0.8, 2, 0][i % 7],
    })),
    { betas: [0.85, 0.97], eps: 3e-7, fused },
  );
}

/** Gradients of growing spread, some exactly zero, one tiny, one large; a parameter left out. */
function gradients(rng: Rng, step: number): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, shape] of SHAPES) {
    if (name === "head.bias" && step === 2) continue; // no gradient: skipped, count held
    const n = shape.reduce((a, b) => a * b, 1);
    const scale = [1e-6, 1, 30][(step + name.length) % 3];
    const data = Float32Array.from(
      { length: n },
      (_, i) => i % 11 === 0 ? 0 : rng.uniformIn(-1, 1) * scale,
    );
    out.set(name, tf.tensor(data, shape));
  }
  return out;
}

Deno.test("fused AdamW is bit for bit the tensor path over steps with an lr schedule, decay groups and lr scales", async () => {
  const before = tf.memory().numTensors;
  const fusedParams = makeParams(new Rng(7));
  const plainParams = makeParams(new Rng(7));
  const fused = optimizer(fusedParams, true);
  const plain = optimizer(plainParams, false);
  const gradRng = new Rng(11);
  const schedule = { lr: 3e-2, minLr: 1e-5, warmupEpochs: 1.5, epochs: 6 };
  for (let k = 0; k < 6; k++) {
    const grads = gradients(gradRng, k);
    const items = [...grads].map(([name, g]) => {
      const w = fusedParams.get(name)!;
      return { variable: w, m: w, v: w, grad: g, lr: 1, weightDecay: 0, t: 1 };
    });
    assert.ok(canFuseAdamW(items), "the fused step applies on wasm");
    const lr = cosineLr(k + 0.5, schedule);
    // The fused step runs no tfjs kernel at all; the tensor path runs many.
    const kernels = (await tf.profile(() => fused.step(grads, lr))).kernels.length;
    assert.equal(kernels, 0, "the fused path ran");
    assert.ok((await tf.profile(() => plain.step(grads, lr))).kernels.length > 50);
    tf.dispose([...grads.values()]);
  }
  for (const [name] of SHAPES) {
    const a = fusedParams.get(name)!.dataSync(), b = plainParams.get(name)!.dataSync();
    assert.deepEqual(new Uint32Array(a.buffer.slice(0)), new Uint32Array(b.buffer.slice(0)), name);
    assert.equal(fused.stepCount(name), plain.stepCount(name), name);
  }
  assert.equal(fused.stepCount("head.bias"), 5);
  // The parameters moved: a test of an update that did nothing would pass the above.
  const moved = fusedParams.get("embed.weight")!.dataSync()[1];
  const start = makeParams(new Rng(7));
  assert.notEqual(moved, start.get("embed.weight")!.dataSync()[1]);
  tf.dispose([...start.values()]);
  // Moments too (they are what a checkpoint saves).
  return Promise.all([fused.stateTensors(), plain.stateTensors()]).then(([sa, sb]) => {
    for (const [key, t] of sa) {
      assert.deepEqual(
        new Uint32Array((t.data as Float32Array).buffer.slice(0)),
        new Uint32Array((sb.get(key)!.data as Float32Array).buffer.slice(0)),
        key,
      );
    }
    fused.dispose();
    plain.dispose();
    tf.dispose([...fusedParams.values(), ...plainParams.values()]);
    assert.equal(tf.memory().numTensors, before);
  });
});

Deno.test("fused AdamW follows torch's formula in float64 within float32 rounding", () => {
  const p0 = [0.5, -1.25, 2, 0.001];
  const gs = [[0.1, -0.2, 0.3, 1e-9], [-0.05, 0.4, 0.3, 2], [1, 1, -1, 0]];
  const lrs = [1e-2, 5e-3, 2e-2];
  const w = tf.tidy(() => tf.variable(tf.tensor1d(p0)));
  const opt = new AdamW([{ name: "w", variable: w, lrScale: 0.5, weightDecay: 0.1 }], {
    betas: [0.9, 0.95],
  });
  const p = [...p0], m = [0, 0, 0, 0], v = [0, 0, 0, 0];
  gs.forEach((g, k) => {
    const gt = tf.tensor1d(g);
    opt.step(new Map([["w", gt]]), lrs[k]);
    gt.dispose();
    const t = k + 1, lr = lrs[k] * 0.5;
    for (let i = 0; i < 4; i++) {
      p[i] *= 1 - lr * 0.1;
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i];
      p[i] -= (lr / (1 - 0.9 ** t)) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - 0.95 ** t) + 1e-8);
    }
  });
  Array.from(w.dataSync()).forEach((x, i) =>
    assert.ok(Math.abs(x - p[i]) < 1e-6, `${i}: ${x} vs ${p[i]}`)
  );
  opt.dispose();
  w.dispose();
});

Deno.test("fused AdamW writes only its own variables when a buffer is shared", () => {
  const before = tf.memory().numTensors;
  const init = tf.tensor1d([1, 2, 3]);
  const w = tf.variable(init); // shares init's buffer
  const snapshot = tf.clone(w); // shares it too
  const opt = new AdamW([{ name: "w", variable: w, weightDecay: 0.5 }]);
  const g = tf.tensor1d([1, -1, 0.5]);
  opt.step(new Map([["w", g]]), 0.1);
  assert.deepEqual(Array.from(init.dataSync()), [1, 2, 3]);
  assert.deepEqual(Array.from(snapshot.dataSync()), [1, 2, 3]);
  assert.ok(w.dataSync()[0] < 1, "the variable itself moved");
  tf.dispose([init, snapshot, g, w]);
  opt.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("adamw parity section passes on wasm with the fused step", async () => {
  const section = SECTIONS.find((s) => s.name === "adamw");
  assert.ok(section);
  const fx = await Fixture.open(PARITY_DIR);
  const results: { ok: boolean; quantity: string }[] = [];
  for await (const r of section.run(fx) as AsyncIterable<{ ok: boolean; quantity: string }>) {
    results.push(r);
  }
  assert.deepEqual(results.filter((r) => !r.ok), []);
  assert.ok(results.filter((r) => r.quantity.startsWith("after_adamw:")).length > 80);
});

Deno.test("the wasm SIMD loop is available on this runtime, so the tests above run it", () => {
  const b = activeWasm();
  assert.ok(b !== null, "wasm is the backend");
  const memory = heapMemory(b);
  assert.ok(memory !== null, "tfjs-wasm exposes its memory");
  assert.equal(typeof adamwSimd(memory), "function");
});

Deno.test("fused AdamW: kernels that cache packed weights per tensor see the new values (matMul, conv2d)", () => {
  // tfjs-wasm's XNNPACK matMul (BLAS off here) and Conv2D pack a weight once per tensor id;
  // an update written into the old buffer would leave them computing with the old weights.
  const before = tf.memory().numTensors;
  const rng = new Rng(5);
  const init = (shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return Float32Array.from({ length: n }, () => rng.uniformIn(-1, 1));
  };
  const wData = init([6, 5]), kData = init([3, 3, 2, 4]);
  const x = tf.tensor2d(init([4, 6]), [4, 6]);
  const img = tf.tensor4d(init([1, 5, 5, 2]), [1, 5, 5, 2]);
  const run = (fused: boolean) => {
    const w = tf.tidy(() => tf.variable(tf.tensor2d(wData, [6, 5])));
    const k = tf.tidy(() => tf.variable(tf.tensor4d(kData, [3, 3, 2, 4])));
    const opt = new AdamW([{ name: "w", variable: w }, { name: "k", variable: k }], { fused });
    const outs: Float32Array[] = [];
    for (let s = 0; s < 3; s++) {
      tf.tidy(() => {
        outs.push(tf.matMul(x, w).dataSync() as Float32Array);
        outs.push(tf.conv2d(img, k as tf.Tensor4D, 1, "same").dataSync() as Float32Array);
        const gw = tf.onesLike(w), gk = tf.mul(tf.onesLike(k), s + 1);
        opt.step(new Map([["w", gw], ["k", gk]]), 0.1);
      });
    }
    opt.dispose();
    tf.dispose([w, k]);
    return outs;
  };
  const plain = run(false), fused = run(true);
  // Steps changed the weights, so the outputs differ from step to step...
  assert.notDeepEqual(plain[0], plain[2]);
  // ... and the fused optimizer's forward passes see exactly the same weights.
  fused.forEach((o, i) => assert.deepEqual(o, plain[i], `output ${i}`));
  tf.dispose([x, img]);
  assert.equal(tf.memory().numTensors, before);
});
