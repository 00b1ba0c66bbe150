import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { Fixture, SECTIONS } from "@lib/parity";
import { AdamW, EXP_AVG_PREFIX } from "@lib/train";
import { PARITY_DIR } from "../_support/fixtures.ts";

await initBackend({ backend: "cpu" });

Deno.test("adamw parity section: one step on the stored gradients matches mtm_after_adamw", async () => {
  const before = tf.memory().numTensors;
  const adamwSection = SECTIONS.find((s) => s.name === "adamw");
  assert.ok(adamwSection, "the adamw section is registered in SECTIONS");
  const fx = await Fixture.open(PARITY_DIR);
  const results = [];
  for await (const r of adamwSection.run(fx) as AsyncIterable<unknown>) results.push(r);
  const bad = results.filter((r) => !(r as { ok: boolean }).ok);
  assert.deepEqual(bad, []);
  // model names + shapes (mtm, cls), 2 groups + frozen set, 91 trainable parameters + their
  // name set, 5 layer-decay checks
  assert.equal(results.length, 2 + 2 + 3 + 91 + 1 + 5);
  const worst = Math.max(
    ...results.map((r) => (r as { worst_ratio: number }).worst_ratio),
  );
  console.log(`adamw parity: worst |err| / tolerance = ${worst.toExponential(2)}`);
  assert.equal(tf.memory().numTensors, before);
});

/** The torch 1.13 formula in float64, for a few steps. */
function reference(
  p0: number[],
  gs: number[][],
  lrs: number[],
  o: { b1: number; b2: number; eps: number; wd: number; scale: number },
): number[] {
  const p = [...p0], m = p0.map(() => 0), v = p0.map(() => 0);
  gs.forEach((g, k) => {
    const t = k + 1, lr = lrs[k] * o.scale;
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * g[i];
      v[i] = o.b2 * v[i] + (1 - o.b2) * g[i] * g[i];
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - o.b2 ** t) + o.eps;
      p[i] -= (lr / (1 - o.b1 ** t)) * m[i] / denom;
    }
  });
  return p;
}

Deno.test("AdamW follows torch's formula over several steps with lr scale and decay", () => {
  const p0 = [0.5, -1.25, 2, 0.001];
  const gs = [[0.1, -0.2, 0.3, 1e-9], [-0.05, 0.4, 0.3, 2], [1, 1, -1, 0]];
  const lrs = [1e-2, 5e-3, 2e-2];
  const w = tf.tidy(() => tf.variable(tf.tensor1d(p0)));
  const opt = new AdamW([{ name: "w", variable: w, lrScale: 0.5, weightDecay: 0.1 }], {
    betas: [0.9, 0.95],
    eps: 1e-8,
  });
  for (let k = 0; k < gs.length; k++) {
    const g = tf.tensor1d(gs[k]);
    opt.step(new Map([["w", g]]), lrs[k]);
    g.dispose();
  }
  const want = reference(p0, gs, lrs, { b1: 0.9, b2: 0.95, eps: 1e-8, wd: 0.1, scale: 0.5 });
  const got = Array.from(w.dataSync());
  got.forEach((x, i) => assert.ok(Math.abs(x - want[i]) < 1e-6, `${i}: ${x} vs ${want[i]}`));
  assert.equal(opt.stepCount("w"), 3);
  opt.dispose();
  w.dispose();
});

Deno.test("AdamW skips parameters without a gradient and keeps their step count", () => {
  const a = tf.tidy(() => tf.variable(tf.tensor1d([1, 2]))),
    b = tf.tidy(() => tf.variable(tf.tensor1d([3])));
  const opt = new AdamW([{ name: "a", variable: a }, { name: "b", variable: b }]);
  const g = tf.tensor1d([1, 1]);
  opt.step({ a: g }, 0.1);
  assert.deepEqual([opt.stepCount("a"), opt.stepCount("b")], [1, 0]);
  assert.deepEqual(Array.from(b.dataSync()), [3]);
  assert.throws(() => opt.step({ c: g }, 0.1), { name: "RangeError", message: /no parameter "c"/ });
  assert.throws(() => opt.step({ b: g }, 0.1), {
    name: "TypeError",
    message: 'Cannot apply gradient of shape [2] to "b" of shape [1]',
  });
  g.dispose();
  opt.dispose();
  a.dispose();
  b.dispose();
});

Deno.test("AdamW state saves and restores exactly: continued steps are bit-identical", async () => {
  const init = [0.3, -0.7, 1.1];
  const grads = [[0.2, -0.1, 0.05], [0.3, 0.3, -0.2], [-0.1, 0.2, 0.4], [0.05, -0.5, 0.1]];
  const run = async (split: boolean) => {
    let w = tf.tidy(() => tf.variable(tf.tensor1d(init)));
    let opt = new AdamW([{ name: "w", variable: w, weightDecay: 0.05 }], { betas: [0.9, 0.95] });
    for (let k = 0; k < grads.length; k++) {
      if (split && k === 2) {
        const tensors = await opt.stateTensors();
        const json = JSON.parse(JSON.stringify(opt.stateJson()));
        const values = w.dataSync().slice();
        opt.dispose();
        w.dispose();
        w = tf.tidy(() => tf.variable(tf.tensor1d(values)));
        opt = new AdamW([{ name: "w", variable: w, weightDecay: 0.05 }], { betas: [0.9, 0.95] });
        opt.loadState(json, tensors);
        assert.ok(tensors.has(EXP_AVG_PREFIX + "w"));
      }
      const g = tf.tensor1d(grads[k]);
      opt.step({ w: g }, 1e-2);
      g.dispose();
    }
    const out = Array.from(w.dataSync());
    opt.dispose();
    w.dispose();
    return out;
  };
  const before = tf.memory().numTensors;
  assert.deepEqual(await run(true), await run(false));
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("AdamW.loadState names missing and unexpected parameters", async () => {
  const a = tf.tidy(() => tf.variable(tf.tensor1d([1])));
  const opt = new AdamW([{ name: "a", variable: a }]);
  const json = { ...opt.stateJson(), names: ["z"], steps: [0] };
  const tensors = await opt.stateTensors();
  assert.throws(() => opt.loadState(json, tensors, "ck.json"), {
    name: "TypeError",
    message: 'Cannot load optimizer state from "ck.json": parameters differ ' +
      "(missing: a; unexpected: z)",
  });
  opt.dispose();
  a.dispose();
});
