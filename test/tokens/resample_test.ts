import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { readSafetensorsFile, toFloat32 } from "@lib/io";
import { compareClose, parseTolerance } from "@lib/parity";
import {
  affineWarp,
  applyWarp,
  bicubicWeights,
  bicubicWindowWeights,
  composeWarps,
  cropResizeBicubic,
  inverseAffineMatrix,
  permutationWarp,
  resampleSeparable,
  resizeBicubic,
  separableWarp,
  warpToDense,
} from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";

const meta = JSON.parse(await Deno.readTextFile(parityPath("meta.json")));
const taTol = parseTolerance(
  meta.tolerances.tokenadapt_io.rtol,
  meta.tolerances.tokenadapt_io.atol,
);
const trTol = parseTolerance(
  meta.tolerances.transforms_io.rtol,
  meta.tolerances.transforms_io.atol,
);
const taIo = (await readSafetensorsFile(parityPath("tokenadapt_io.safetensors"))).tensors;
const trIo = (await readSafetensorsFile(parityPath("transforms_io.safetensors"))).tensors;

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`[${backend}] flip + resizeBicubic 64->56 matches the fixture's transformed56`, async () => {
    await initBackend({ backend });
    const conv = taIo.get("conversion")!;
    const x = tf.tensor4d(toFloat32(conv), conv.shape as [number, number, number, number]);
    const before = tf.memory().numTensors;
    const y = tf.tidy(() => resizeBicubic(tf.reverse(x, 3), [56, 56]));
    const r = compareClose(
      "t",
      "transformed56",
      { shape: y.shape, data: await y.data() },
      taIo.get("transformed56")!,
      taTol,
    );
    y.dispose();
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
    assert.ok(r.ok, JSON.stringify(r));
    // tighter than the stated tolerance: the rule reproduces torch to a few 1e-6
    assert.ok(r.max_abs_err < 1e-5, `max abs err ${r.max_abs_err}`);
  });

  Deno.test(`[${backend}] cropResizeBicubic with the fixture's RRC boxes matches rrc_out`, async () => {
    await initBackend({ backend });
    const emb = trIo.get("emb")!;
    const p = Array.from(trIo.get("rrc_params")!.data as BigInt64Array, Number);
    const boxes = [0, 1, 2, 3].map((b) => ({
      i: p[4 * b],
      j: p[4 * b + 1],
      h: p[4 * b + 2],
      w: p[4 * b + 3],
    }));
    const x = tf.tensor4d(toFloat32(emb), emb.shape as [number, number, number, number]);
    const before = tf.memory().numTensors;
    const y = cropResizeBicubic(x, boxes, [28, 28]);
    assert.equal(tf.memory().numTensors, before + 1);
    const r = compareClose(
      "t",
      "rrc_out",
      { shape: y.shape, data: await y.data() },
      trIo.get("rrc_out")!,
      trTol,
    );
    // one box for the whole batch equals the per-sample path with repeated boxes
    const one = cropResizeBicubic(x, boxes[3], [28, 28]);
    const rep = cropResizeBicubic(x, [boxes[3], boxes[3], boxes[3], boxes[3]], [28, 28]);
    const d = tf.tidy(() => one.sub(rep).abs().max().dataSync()[0]);
    tf.dispose([x, y, one, rep]);
    assert.ok(r.ok, JSON.stringify(r));
    assert.ok(r.max_abs_err < 1e-5, `max abs err ${r.max_abs_err}`);
    assert.ok(d < 1e-6, `shared vs per-sample box differ by ${d}`);
  });
}

Deno.test("bicubicWeights: same size is the identity, columns sum to 1, torch's taps for 4->2", () => {
  const id = bicubicWeights(5, 5);
  for (let s = 0; s < 5; s++) {
    for (let o = 0; o < 5; o++) assert.equal(id.data[s * 5 + o], s === o ? 1 : 0);
  }
  const w = bicubicWeights(4, 2);
  // target 0 reads s = 2*0.5-0.5 = 0.5: taps -1,0,1,2 with t = 0.5 -> -0.09375, 0.59375, 0.59375, -0.09375
  const col0 = [0, 1, 2, 3].map((s) => w.data[s * 2]);
  assert.deepEqual(col0, [-0.09375 + 0.59375, 0.59375, -0.09375, 0]);
  for (const [i, o] of [[7, 3], [3, 7], [64, 56], [27, 28]]) {
    const ww = bicubicWeights(i, o);
    for (let c = 0; c < o; c++) {
      let s = 0;
      for (let r = 0; r < i; r++) s += ww.data[r * o + c];
      assert.ok(Math.abs(s - 1) < 1e-6, `${i}->${o} column ${c} sums to ${s}`);
    }
  }
  // a crop: zero weight outside it
  const crop = bicubicWeights(10, 4, 3, 5);
  for (let s = 0; s < 10; s++) {
    const any = [0, 1, 2, 3].some((o) => crop.data[s * 4 + o] !== 0);
    assert.equal(any, s >= 3 && s < 8, `source ${s}`);
  }
});

Deno.test("bicubicWindowWeights on an integer window inside the axis equals the torch crop rule", () => {
  // with a window well inside the axis, clamping never triggers; the rules then agree up to
  // float32 rounding of the scale
  const a = bicubicWindowWeights(20, 6, 5, 10), b = bicubicWeights(20, 6, 5, 10);
  for (let k = 0; k < a.data.length; k++) {
    const t = Math.floor(k / 6);
    if (t >= 6 && t <= 13) assert.ok(Math.abs(a.data[k] - b.data[k]) < 1e-6, `element ${k}`);
  }
});

Deno.test("resampling rejects bad sizes, crops and inputs with the right errors", () => {
  assert.throws(() => bicubicWeights(4, 0), { name: "RangeError", message: /output size 0/ });
  assert.throws(() => bicubicWeights(4, 2, 3, 2), RangeError);
  assert.throws(() => bicubicWeights(4, 2, 0.5, 2), RangeError);
  const x = tf.zeros([1, 2, 4, 4]) as tf.Tensor4D;
  assert.throws(
    () => cropResizeBicubic(x, [{ i: 0, j: 0, h: 2, w: 2 }, { i: 0, j: 0, h: 2, w: 2 }], [2, 2]),
    {
      name: "TypeError",
      message: /1 samples with 2 boxes/,
    },
  );
  assert.throws(() => cropResizeBicubic(x, { i: 3, j: 0, h: 2, w: 2 }, [2, 2]), RangeError);
  const i = tf.zeros([1, 4, 4], "int32");
  assert.throws(() => resizeBicubic(i as unknown as tf.Tensor4D, [2, 2]), TypeError);
  assert.throws(() => applyWarp(x, affineWarp(5, 5, {})), {
    name: "TypeError",
    message: /4x4 map with a warp from 5x5/,
  });
  assert.throws(() => affineWarp(4, 4, { angle: NaN }), RangeError);
  tf.dispose([x, i]);
});

Deno.test("inverseAffineMatrix: identity, 90 degree rotation and a hand-computed shear + translation", () => {
  const close = (a: number[], b: number[]) =>
    a.forEach((v, k) => assert.ok(Math.abs(v - b[k]) < 1e-12, `[${a}] vs [${b}]`));
  close(inverseAffineMatrix(0, [0, 0], [0, 0]), [1, 0, 0, 0, 1, 0]);
  // clockwise 90: forward (x, y) -> (-y, x); inverse (x, y) -> (y, -x)
  close(inverseAffineMatrix(90, [0, 0], [0, 0]), [0, 1, 0, -1, 0, 0]);
  // shear x by 45 degrees: forward [[1, -1], [0, 1]], inverse [[1, 1], [0, 1]];
  // translation (2, 3): p = Minv (q - t) -> offset -(Minv t) = -(2 + 3, 3)
  close(inverseAffineMatrix(0, [2, 3], [45, 0]), [1, 1, -5, 0, 1, -3]);
  // shear y by 45 degrees: forward [[1, 0], [-1, 1]], inverse [[1, 0], [1, 1]]
  close(inverseAffineMatrix(0, [0, 0], [0, 45]), [1, 0, 0, 1, 1, 0]);
});

function denseApply(w: ReturnType<typeof affineWarp>, img: number[]): number[] {
  const m = warpToDense(w), n = w.inH * w.inW;
  return Array.from({ length: w.outH * w.outW }, (_, r) => {
    let s = 0;
    for (let c = 0; c < n; c++) s += m[r * n + c] * img[c];
    return s;
  });
}

Deno.test("affineWarp: identity is the identity map; 90 degrees moves the top-left pixel to the top-right", () => {
  const img = Array.from({ length: 16 }, (_, k) => k + 1);
  assert.deepEqual(denseApply(affineWarp(4, 4, {}), img), img);
  const rot = denseApply(affineWarp(4, 4, { angle: 90 }), img).map((v) =>
    Math.round(v * 1e6) / 1e6
  );
  // clockwise: row r of the output is column r of the input read bottom-up
  assert.deepEqual(rot, [13, 9, 5, 1, 14, 10, 6, 2, 15, 11, 7, 3, 16, 12, 8, 4]);
  // translate right by a quarter of the width = 1 pixel: first column is zero-filled
  const tr = denseApply(affineWarp(4, 4, { translateX: 0.25 }), img);
  assert.deepEqual(tr, [0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15]);
});

Deno.test("affineWarp fillMask scales border pixels by their in-bounds weight once more", () => {
  const ones = Array(16).fill(1);
  // half a pixel to the right: column 0 reads half outside
  const plain = denseApply(affineWarp(4, 4, { translateX: 0.125 }, { fillMask: false }), ones);
  const masked = denseApply(affineWarp(4, 4, { translateX: 0.125 }), ones);
  assert.ok(Math.abs(plain[0] - 0.5) < 1e-7 && Math.abs(plain[1] - 1) < 1e-7);
  assert.ok(Math.abs(masked[0] - 0.25) < 1e-7 && Math.abs(masked[1] - 1) < 1e-7);
});

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`[${backend}] applyWarp equals the dense map, per-sample too, and its gradient is the transpose`, async () => {
    await initBackend({ backend });
    const w1 = affineWarp(6, 5, { angle: 17, translateX: 0.1, shearX: 8 });
    const w2 = affineWarp(6, 5, { angle: -25, translateY: -0.2, shearY: 12 });
    const data = Float32Array.from({ length: 2 * 3 * 30 }, (_, k) => Math.sin(k * 0.7));
    const x = tf.tensor4d(data, [2, 3, 6, 5]);
    const dy = tf.tensor4d(Float32Array.from({ length: 180 }, (_, k) => Math.cos(k * 0.3)), [
      2,
      3,
      6,
      5,
    ]);
    const before = tf.memory().numTensors;
    const y = applyWarp(x, [w1, w2]);
    const g = tf.grad((v: tf.Tensor) => applyWarp(v as tf.Tensor4D, [w1, w2]).mul(dy).sum())(x);
    const shared = applyWarp(x, w1);
    assert.equal(tf.memory().numTensors, before + 3);
    const [yv, gv, sv] = [await y.data(), await g.data(), await shared.data()];
    tf.dispose([y, g, shared]);
    assert.equal(tf.memory().numTensors, before);
    const dyv = await dy.data();
    for (let b = 0; b < 2; b++) {
      const w = b === 0 ? w1 : w2, m = warpToDense(w);
      for (let c = 0; c < 3; c++) {
        const off = (b * 3 + c) * 30;
        for (let r = 0; r < 30; r++) {
          let s = 0, gs = 0;
          for (let k = 0; k < 30; k++) {
            s += m[r * 30 + k] * data[off + k];
            gs += m[k * 30 + r] * dyv[off + k];
          }
          assert.ok(Math.abs(yv[off + r] - s) < 1e-5, `value b${b} c${c} r${r}`);
          assert.ok(Math.abs(gv[off + r] - gs) < 1e-5, `grad b${b} c${c} r${r}`);
          if (b === 0) assert.ok(Math.abs(sv[off + r] - s) < 1e-5);
        }
      }
    }
    tf.dispose([x, dy]);
  });

  Deno.test(`[${backend}] bicubic resize is differentiable and leak-free`, async () => {
    await initBackend({ backend });
    const x = tf.randomNormal([2, 3, 8, 8], 0, 1, "float32", 3) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const boxes = [{ i: 1, j: 0, h: 6, w: 7 }, { i: 0, j: 0, h: 8, w: 8 }];
    for (let k = 0; k < 3; k++) {
      const g = tf.grad((v: tf.Tensor) => cropResizeBicubic(v as tf.Tensor4D, boxes, [5, 5]).sum())(
        x,
      );
      const s = tf.tidy(() => g.sum().dataSync()[0]);
      g.dispose();
      // each target's weights sum to 1, so the gradient of the sum sums to the output size
      assert.ok(Math.abs(s - 2 * 3 * 25) < 1e-3, `${s}`);
      assert.equal(tf.memory().numTensors, before);
    }
    const g = tf.grad((v: tf.Tensor) => resizeBicubic(v as tf.Tensor4D, [5, 6]).sum())(x);
    const total = tf.tidy(() => g.sum().dataSync()[0]);
    g.dispose();
    assert.ok(Math.abs(total - 2 * 3 * 5 * 6) < 1e-3, `${total}`);
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
  });
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`[${backend}] composed warps equal the maps applied in turn; dense and gather paths agree`, async () => {
    await initBackend({ backend });
    const x = tf.randomNormal([2, 3, 8, 8], 0, 1, "float32", 6) as tf.Tensor4D;
    const flip = permutationWarp(8, 8, true);
    const rot = affineWarp(8, 8, { angle: 21, shearY: 7 });
    const crop = separableWarp(bicubicWeights(8, 6, 1, 6), bicubicWeights(8, 6, 0, 7));
    const composed = composeWarps(composeWarps(flip, rot), crop);
    const before = tf.memory().numTensors;
    const stepwise = tf.tidy(() => {
      const a = applyWarp(x, flip);
      assert.deepEqual(a.dataSync(), tf.reverse(x, 3).dataSync());
      const b = applyWarp(a, rot);
      // the separable crop as a sparse map equals the separable matMuls
      const c1 = applyWarp(b, crop);
      const c2 = resampleSeparable(b, bicubicWeights(8, 6, 1, 6), bicubicWeights(8, 6, 0, 7));
      assert.ok(c1.sub(c2).abs().max().dataSync()[0] < 1e-5);
      return c1;
    });
    for (const method of ["dense", "gather"] as const) {
      const once = applyWarp(x, [composed, composed], { method });
      const d = tf.tidy(() => once.sub(stepwise).abs().max().dataSync()[0]);
      assert.ok(d < 1e-5, `${method}: composed differs by ${d}`);
      const g = tf.grad((v: tf.Tensor) =>
        applyWarp(v as tf.Tensor4D, [composed, composed], { method }).sum()
      )(x);
      const gd = tf.grad((v: tf.Tensor) =>
        applyWarp(v as tf.Tensor4D, composed, { method: "dense" }).sum()
      )(x);
      const e = tf.tidy(() => g.sub(gd).abs().max().dataSync()[0]);
      assert.ok(e < 1e-5, `${method}: gradient differs by ${e}`);
      tf.dispose([once, g, gd]);
    }
    stepwise.dispose();
    assert.equal(tf.memory().numTensors, before);
    assert.throws(() => composeWarps(crop, rot), {
      name: "TypeError",
      message: /to 6x6 with one from 8x8/,
    });
    x.dispose();
  });
}
