import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  applyGeometric,
  drawGeometricParams,
  geometricAugmentation,
  type GeometricParams,
  resolveGeometricAugConfig,
} from "@lib/adapters";
import { Rng } from "@lib/random";

Deno.test("geometric draws: seeded, JSON-serializable, one flip/chain per batch by default", () => {
  const c = resolveGeometricAugConfig();
  const a = drawGeometricParams([6, 4, 16, 16], 12, c, new Rng(3));
  const b = drawGeometricParams([6, 4, 16, 16], 12, c, new Rng(3));
  assert.deepEqual(a, b);
  assert.deepEqual(JSON.parse(JSON.stringify(a)), a);
  assert.ok(a.flip.every((f) => f === a.flip[0]));
  assert.ok(a.steps.every((s) => JSON.stringify(s) === JSON.stringify(a.steps[0])));
  assert.equal(a.boxes.length, 6);
  const p = drawGeometricParams(
    [6, 4, 16, 16],
    12,
    resolveGeometricAugConfig({ groupSize: 1 }),
    new Rng(3),
  );
  assert.ok(new Set(p.steps.map((s) => JSON.stringify(s))).size > 1, "per-sample chains differ");
});

Deno.test("geometric draws follow the reference's probabilities and ranges", () => {
  const c = resolveGeometricAugConfig();
  const rng = new Rng(11);
  const N = 4000;
  let flips = 0, chains = 0;
  const fired: Record<string, number> = {
    rotate: 0,
    translateX: 0,
    translateY: 0,
    shearX: 0,
    shearY: 0,
  };
  for (let k = 0; k < N; k++) {
    const p = drawGeometricParams([1, 1, 64, 64], 56, c, rng);
    if (p.flip[0]) flips++;
    if (p.steps[0].length > 0) chains++;
    for (const s of p.steps[0]) {
      fired[s.kind]++;
      if (s.kind === "rotate") assert.ok(s.value >= -30 && s.value < 30);
      if (s.kind.startsWith("shear")) assert.ok(s.value >= 0 && s.value < 15);
      if (s.kind.startsWith("translate")) {
        const px = s.value * 64;
        assert.ok(Number.isInteger(Math.round(px * 1e9) / 1e9) && Math.abs(px) <= 13, `${px}`);
      }
    }
    const b = p.boxes[0];
    assert.ok(b.i >= 0 && b.j >= 0 && b.i + b.h <= 64 && b.j + b.w <= 64);
  }
  const near = (x: number, p: number) => Math.abs(x / N - p) < 4 * Math.sqrt(p * (1 - p) / N);
  assert.ok(near(flips, 0.5), `flips ${flips}`);
  // a chain shows up as non-empty unless all five steps missed: 0.5 * (1 - 0.5^5)
  assert.ok(near(chains, 0.5 * (1 - 1 / 32)), `chains ${chains}`);
  for (const [k, v] of Object.entries(fired)) assert.ok(near(v, 0.25), `${k} fired ${v}`);
});

function params(
  over: Partial<GeometricParams>,
  B: number,
  grid: number,
  size = grid,
): GeometricParams {
  return {
    grid: [grid, grid],
    size,
    flip: Array(B).fill(false),
    steps: Array.from({ length: B }, () => []),
    boxes: Array.from({ length: B }, () => ({ i: 0, j: 0, h: grid, w: grid })),
    ...over,
  };
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`[${backend}] applyGeometric: identity is exact, flip is a mirror, leak-free`, async () => {
    await initBackend({ backend });
    const x = tf.randomNormal([3, 2, 8, 8], 0, 1, "float32", 1) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const id = applyGeometric(x, params({}, 3, 8));
    assert.deepEqual(await id.data(), await x.data());
    const fl = applyGeometric(x, params({ flip: [true, true, true] }, 3, 8));
    const mirror = tf.reverse(x, 3);
    assert.deepEqual(await fl.data(), await mirror.data());
    // per-sample flips (different per sample) take the sparse path: still exact
    const mixed = applyGeometric(x, params({ flip: [true, false, true] }, 3, 8));
    const want = tf.tidy(() =>
      tf.concat([mirror.slice([0], [1]), x.slice([1], [1]), mirror.slice([2], [1])])
    );
    assert.deepEqual(await mixed.data(), await want.data());
    tf.dispose([id, fl, mirror, mixed, want]);
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
  });

  Deno.test(`[${backend}] the same draw at twice the resolution gives the upsampled result (whole-pixel shift)`, async () => {
    await initBackend({ backend });
    const small = tf.randomNormal([2, 3, 8, 8], 0, 1, "float32", 2) as tf.Tensor4D;
    // nearest 2x upsampling: every 8-grid cell becomes a 2x2 block
    const big = tf.tidy(() =>
      small.reshape([2, 3, 8, 1, 8, 1]).tile([1, 1, 1, 2, 1, 2]).reshape([2, 3, 16, 16])
    ) as tf.Tensor4D;
    const p = params(
      { steps: [[{ kind: "translateX", value: 0.25 }], [{ kind: "translateY", value: -0.125 }]] },
      2,
      8,
    );
    const a = applyGeometric(small, p, { fillMask: false });
    const b = applyGeometric(big, p, { fillMask: false });
    const aUp = tf.tidy(() =>
      a.reshape([2, 3, 8, 1, 8, 1]).tile([1, 1, 1, 2, 1, 2]).reshape([2, 3, 16, 16])
    );
    const d = tf.tidy(() => aUp.sub(b).abs().max().dataSync()[0]);
    assert.ok(d < 1e-6, `max difference ${d}`);
    tf.dispose([small, big, a, b, aUp]);
  });

  Deno.test(`[${backend}] geometricAugmentation is differentiable and returns [B, C, size, size]`, async () => {
    await initBackend({ backend });
    const aug = geometricAugmentation(6, { chainProb: 1, stepProb: 1, groupSize: 1 });
    const x = tf.randomNormal([2, 3, 8, 8], 0, 1, "float32", 4) as tf.Tensor4D;
    const p = aug.draw(x, new Rng(5));
    assert.equal(p.steps[0].length, 5);
    const before = tf.memory().numTensors;
    const y = aug.apply(x, p);
    assert.deepEqual(y.shape, [2, 3, 6, 6]);
    const g = tf.grad((v: tf.Tensor) => aug.apply(v as tf.Tensor4D, p).square().sum())(x);
    const n = tf.tidy(() => g.abs().sum().dataSync()[0]);
    assert.ok(Number.isFinite(n) && n > 0);
    tf.dispose([y, g]);
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
  });
}

Deno.test("geometric settings: unknown keys and bad ranges are refused", () => {
  assert.throws(() => resolveGeometricAugConfig({ flip: 0.5 } as never), {
    name: "TypeError",
    message: /Unknown geometric augmentation key "flip"/,
  });
  assert.throws(() => resolveGeometricAugConfig({ flipProb: 2 }), RangeError);
  assert.throws(() => resolveGeometricAugConfig({ cropScale: [0.5, 0.2] }), RangeError);
  assert.throws(() => resolveGeometricAugConfig({ translate: [0.2] as never }), TypeError);
  const x = tf.zeros([2, 1, 8, 8]) as tf.Tensor4D;
  assert.throws(() => applyGeometric(x, params({}, 3, 8)), TypeError);
  assert.throws(() => applyGeometric(x, params({}, 2, 6, 5)), {
    name: "RangeError",
    message: /6x6 grid to a 8x8 map/,
  });
  x.dispose();
});

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`[${backend}] composed per-sample path equals the step-by-step path sample by sample`, async () => {
    await initBackend({ backend });
    const c = resolveGeometricAugConfig({ chainProb: 1, stepProb: 0.7, groupSize: 1 });
    const x = tf.randomNormal([5, 2, 12, 12], 0, 1, "float32", 8) as tf.Tensor4D;
    const p = drawGeometricParams(x.shape, 10, c, new Rng(4));
    const before = tf.memory().numTensors;
    const all = applyGeometric(x, p);
    for (let b = 0; b < 5; b++) {
      const one: GeometricParams = {
        ...p,
        flip: [p.flip[b]],
        steps: [p.steps[b]],
        boxes: [p.boxes[b]],
      };
      const d = tf.tidy(() => {
        const y = applyGeometric(x.slice([b], [1]), one);
        return all.slice([b], [1]).sub(y).abs().max().dataSync()[0];
      });
      assert.ok(d < 1e-5, `sample ${b} differs by ${d}`);
    }
    all.dispose();
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
  });
}
