import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { Rng } from "@lib/random";
import {
  createMixup,
  drawCutBox,
  drawCutBoxMinMax,
  resolveMixupOptions,
  sampleBeta,
} from "@lib/adapters";

await initBackend({ backend: "cpu" });

function ramp(B: number, C: number, H: number, W: number): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from({ length: B * C * H * W }, (_, i) => i), [B, C, H, W]);
}

Deno.test("soft targets: smoothing 0.1 over K classes, lam-weighted with the reversed batch", async () => {
  const mix = createMixup({ numClasses: 1000, mixupAlpha: 0.8, cutmixAlpha: 1 });
  const x = ramp(4, 1, 2, 2);
  const { x: mx, targets } = mix.apply(x, [3, 7, 7, 9], { lam: 0.7, cutmix: false, box: null });
  assert.deepEqual(targets.shape, [4, 1000]);
  const t = await targets.array();
  const off = Math.fround(0.1 / 1000), on = Math.fround(0.9 + 0.1 / 1000);
  const f = Math.fround;
  // sample 0: own label 3 with weight 0.7, partner (sample 3) label 9 with 0.3
  assert.equal(t[0][3], f(f(on * f(0.7)) + f(off * f(0.3))));
  assert.equal(t[0][9], f(f(off * f(0.7)) + f(on * f(0.3))));
  assert.equal(t[0][0], f(f(off * f(0.7)) + f(off * f(0.3))));
  // samples 1 and 2 both have label 7: the same class on both sides
  assert.equal(t[1][7], f(f(on * f(0.7)) + f(on * f(0.3))));
  for (const row of t) assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-4);
  // mixup: lam * x + (1 - lam) * reversed x
  const xd = await x.data(), md = await mx.data();
  for (let b = 0; b < 4; b++) {
    for (let k = 0; k < 4; k++) {
      const want = f(f(xd[b * 4 + k] * f(0.7)) + f(xd[(3 - b) * 4 + k] * f(0.3)));
      assert.equal(md[b * 4 + k], want);
    }
  }
  tf.dispose([x, mx, targets]);
});

Deno.test("CutMix: the box comes from the reversed batch and lam is corrected to the box area", async () => {
  const mix = createMixup({ numClasses: 5, mixupAlpha: 0, cutmixAlpha: 1, labelSmoothing: 0 });
  const x = ramp(2, 2, 6, 6);
  let saw = 0;
  for (let seed = 0; seed < 20; seed++) {
    const rng = new Rng(seed);
    const { x: mx, targets, params } = mix.run(x, [0, 1], rng);
    assert.equal(params.cutmix, true);
    const box = params.box!;
    const area = (box.yh - box.yl) * (box.xh - box.xl);
    assert.equal(params.lam, 1 - area / 36);
    const t = await targets.array();
    assert.ok(Math.abs(t[0][0] - params.lam) < 1e-6 && Math.abs(t[0][1] - (1 - params.lam)) < 1e-6);
    const got = await mx.array() as number[][][][], src = await x.array() as number[][][][];
    for (let b = 0; b < 2; b++) {
      for (let c = 0; c < 2; c++) {
        for (let y = 0; y < 6; y++) {
          for (let xx = 0; xx < 6; xx++) {
            const inside = y >= box.yl && y < box.yh && xx >= box.xl && xx < box.xh;
            assert.equal(got[b][c][y][xx], src[inside ? 1 - b : b][c][y][xx]);
          }
        }
      }
    }
    if (area > 0) saw++;
    tf.dispose([mx, targets]);
  }
  assert.ok(saw > 10);
  x.dispose();
});

Deno.test("drawCutBox follows timm's rand_bbox: cut = int(side*sqrt(1-lam)), centre anywhere, clipped", () => {
  const rng = new Rng(4);
  let clipped = 0;
  for (let k = 0; k < 500; k++) {
    const lam = rng.uniform();
    const b = drawCutBox(rng, 28, 20, lam);
    const cutH = Math.trunc(28 * Math.sqrt(1 - lam)), cutW = Math.trunc(20 * Math.sqrt(1 - lam));
    assert.ok(b.yh - b.yl <= 2 * Math.floor(cutH / 2) && b.xh - b.xl <= 2 * Math.floor(cutW / 2));
    assert.ok(b.yl >= 0 && b.yh <= 28 && b.xl >= 0 && b.xh <= 20 && b.yl <= b.yh && b.xl <= b.xh);
    if (b.yh - b.yl < 2 * Math.floor(cutH / 2)) clipped++;
  }
  assert.ok(clipped > 50, "boxes near the border are clipped (lam correction matters)");
  const mm = drawCutBoxMinMax(new Rng(1), 10, 10, [0.2, 0.5]);
  assert.ok(mm.yh - mm.yl >= 2 && mm.yh - mm.yl < 5 && mm.yh <= 10 && mm.xh <= 10);
});

Deno.test("Beta sampler has the right moments (alpha 0.8 and 1.0)", () => {
  for (const a of [0.8, 1, 2.5]) {
    const rng = new Rng(7);
    const n = 40_000;
    let s = 0, s2 = 0;
    for (let i = 0; i < n; i++) {
      const v = sampleBeta(rng, a, a);
      assert.ok(v >= 0 && v <= 1);
      s += v;
      s2 += v * v;
    }
    const mean = s / n, variance = s2 / n - mean * mean;
    assert.ok(Math.abs(mean - 0.5) < 0.01, `a ${a} mean ${mean}`);
    const want = 1 / (4 * (2 * a + 1));
    assert.ok(Math.abs(variance - want) < 0.005, `a ${a} var ${variance} vs ${want}`);
  }
});

Deno.test("switchProb picks CutMix about half the time; prob 0 never mixes; same seed same batch", async () => {
  const mix = createMixup({ numClasses: 10, mixupAlpha: 0.8, cutmixAlpha: 1 });
  assert.equal(
    mix.description,
    "mixup(alpha=0.8, cutmix=1, switch=0.5, p=1, smoothing=0.1)",
  );
  const rng = new Rng(2);
  let cut = 0;
  for (let i = 0; i < 2000; i++) if (mix.draw([4, 2, 8, 8], rng).cutmix) cut++;
  assert.ok(Math.abs(cut / 2000 - 0.5) < 0.04, `cutmix share ${cut / 2000}`);
  const never = createMixup({ numClasses: 10, prob: 0 });
  const x = ramp(2, 1, 3, 3);
  const r = never.run(x, [1, 2], new Rng(0));
  assert.deepEqual(r.params, { lam: 1, cutmix: false, box: null });
  assert.deepEqual(await r.x.data(), await x.data());
  const a = mix.run(x, [1, 2], new Rng(5)), b = mix.run(x, [1, 2], new Rng(5));
  assert.deepEqual(a.params, b.params);
  assert.deepEqual(await a.x.data(), await b.x.data());
  assert.deepEqual(await a.targets.data(), await b.targets.data());
  tf.dispose([x, r.x, r.targets, a.x, a.targets, b.x, b.targets]);
});

Deno.test("mixup options resolve like timm (minmax forces CutMix alpha 1); bad input is named; no leaks", () => {
  const o = resolveMixupOptions({ numClasses: 3, mixupAlpha: 0, cutmixMinMax: [0.2, 0.8] });
  assert.equal(o.cutmixAlpha, 1);
  assert.throws(() => resolveMixupOptions({ numClasses: 3, mixupAlpha: 0 }), /nothing would mix/);
  assert.throws(() => resolveMixupOptions({ numClasses: 0 }), /numClasses = 0/);
  const before = tf.memory().numTensors;
  const mix = createMixup({ numClasses: 3 });
  const odd = ramp(3, 1, 2, 2);
  assert.throws(
    () => mix.run(odd, [0, 1, 2], new Rng(0)),
    new RangeError("Cannot mix a batch of 3: timm's Mixup needs it even"),
  );
  const x = ramp(2, 1, 2, 2);
  assert.throws(
    () => mix.apply(x, [0, 3], { lam: 0.5, cutmix: false, box: null }),
    new RangeError("Cannot make a target for label 3 of sample 1: expected 0..2"),
  );
  assert.throws(() => mix.apply(x, [0], { lam: 0.5, cutmix: false, box: null }), /labels an array/);
  assert.throws(
    () => mix.apply(x, [0, 1], { lam: 0.5, cutmix: true, box: { yl: 0, yh: 3, xl: 0, xh: 1 } }),
    /Cannot apply CutMix box .* to 2x2 maps/,
  );
  assert.throws(() => mix.apply(x, [0, 1], { lam: 2, cutmix: false, box: null }), /lam = 2/);
  const x3 = tf.zeros([2, 2, 2]);
  assert.throws(
    () => mix.run(x3 as tf.Tensor4D, [0, 1], new Rng(0)),
    /got a float32 tensor of shape \[2, 2, 2\]/,
  );
  tf.dispose([odd, x, x3]);
  assert.equal(tf.memory().numTensors, before);
});
