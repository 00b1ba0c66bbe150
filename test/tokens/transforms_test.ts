import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { readSafetensorsFile, toFloat32, toInt32 } from "@lib/io";
import { Rng } from "@lib/random";
import { colorAdapt, createMixup, embNoise } from "@lib/adapters";
import {
  centerCrop,
  centerCropOrigin,
  centerCropTransform,
  type CodeGrids,
  CodeQuantizer,
  composeTransforms,
  drawRrcBox,
  hflip,
  randomResizedCrop,
  replaceSynonyms,
  resizedCrops,
  roundHalfEven,
  rrcFallbackBox,
  rrcTry,
  runTransform,
  swapCodes,
  type SwapParams,
} from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";

const io = (await readSafetensorsFile(parityPath("transforms_io.safetensors"))).tensors;
const meta = JSON.parse(await Deno.readTextFile(parityPath("meta.json")));
const synonymsJson: Record<string, number[]> = JSON.parse(
  await Deno.readTextFile(parityPath("synonyms.json")),
);
await initBackend({ backend: "cpu" });

const ids: CodeGrids = { dtype: "int32", shape: [4, 32, 32], data: toInt32(io.get("ids")!) };

function randomGrids(rng: Rng, B: number, H: number, W: number, K = 391): CodeGrids {
  return {
    dtype: "int32",
    shape: [B, H, W],
    data: Int32Array.from({ length: B * H * W }, () => rng.int(0, K)),
  };
}

function emb(): tf.Tensor4D {
  const t = io.get("emb")!;
  return tf.tensor4d(toFloat32(t), [4, 32, 32, 32]);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// ----------------------------------------------------------------------------- synonyms

Deno.test("replaceSynonyms with the recorded choices gives synonym_out exactly; u < 0.25 <=> replaced", () => {
  const choice = toInt32(io.get("synonym_choice")!);
  const u = toFloat32(io.get("synonym_u")!);
  for (let i = 0; i < u.length; i++) assert.equal(u[i] < 0.25, choice[i] >= 0, `element ${i}`);
  const first2: CodeGrids = { dtype: "int32", shape: [2, 32, 32], data: ids.data.slice(0, 2048) };
  const t = replaceSynonyms(synonymsJson, { prob: 0.25, top: 5 });
  const out = t.apply(first2, { choice });
  assert.deepEqual(out.data, toInt32(io.get("synonym_out")!));
  assert.equal(choice.filter((c) => c >= 0).length, meta.transforms.replace_synonym.num_replaced);
  assert.deepEqual(first2.data, ids.data.slice(0, 2048), "input untouched");
});

Deno.test("replaceSynonyms replaces ~25% of codes, each by a uniform pick of its top 5", () => {
  const rng = new Rng(11);
  const grids = randomGrids(rng, 32, 32, 32);
  const t = replaceSynonyms(synonymsJson);
  assert.equal(t.description, "synonym(p=0.25, top5)");
  const { output, params } = runTransform(t, grids, rng);
  let replaced = 0;
  const picks = [0, 0, 0, 0, 0];
  for (let i = 0; i < grids.data.length; i++) {
    const k = params.choice[i];
    if (k < 0) {
      assert.equal(output.data[i], grids.data[i]);
      continue;
    }
    replaced++;
    picks[k]++;
    assert.equal(output.data[i], synonymsJson[String(grids.data[i])][k]);
  }
  const n = grids.data.length; // 32768: sd of the rate is 0.0024
  assert.ok(Math.abs(replaced / n - 0.25) < 0.01, `rate ${replaced / n}`);
  for (const p of picks) assert.ok(Math.abs(p / replaced - 0.2) < 0.02, `picks ${picks}`);
});

Deno.test("replaceSynonyms: sampleProb chooses whole samples; unchosen samples draw nothing", () => {
  const grids = randomGrids(new Rng(1), 200, 4, 4);
  const t = replaceSynonyms(synonymsJson, { prob: 1, sampleProb: 0.3 });
  assert.equal(t.description, "synonym(p=1, top5, sample_p=0.3)");
  const { params } = runTransform(t, grids, new Rng(2));
  let chosen = 0;
  for (let b = 0; b < 200; b++) {
    const c = params.choice.subarray(b * 16, (b + 1) * 16);
    const all = c.every((v) => v >= 0), none = c.every((v) => v < 0);
    assert.ok(all || none, `sample ${b} partly replaced with prob 1`);
    if (all) chosen++;
  }
  assert.ok(Math.abs(chosen / 200 - 0.3) < 0.1, `chosen ${chosen}`);
  const rng = new Rng(3);
  const before = rng.getState();
  replaceSynonyms(synonymsJson, { sampleProb: 0 }).draw(grids, rng);
  // one uniform per sample for the sample decision (2 words each), nothing else
  const ref = new Rng(3);
  for (let b = 0; b < 200; b++) ref.uniform();
  assert.notDeepEqual(rng.getState(), before);
  assert.deepEqual(rng.getState(), ref.getState());
});

Deno.test("replaceSynonyms accepts the Synonyms dictionary and array forms; bad input is named", () => {
  const g: CodeGrids = { dtype: "int32", shape: [1, 1, 3], data: new Int32Array([0, 1, 2]) };
  const fromLists = replaceSynonyms({
    lists: [Int32Array.of(5), Int32Array.of(6), Int32Array.of(7)],
  }, {
    prob: 1,
  });
  assert.deepEqual(Array.from(runTransform(fromLists, g, new Rng(0)).output.data), [5, 6, 7]);
  const fromArray = replaceSynonyms([[5], [6], []], { prob: 1 });
  assert.throws(
    () => runTransform(fromArray, g, new Rng(0)),
    new RangeError("Cannot replace code 2 at flat index 2: it has no synonyms in the table"),
  );
  assert.throws(
    () => fromArray.apply(g, { choice: new Int32Array(2) }),
    /expected an Int32Array of 3, got .* of length 2/,
  );
  assert.throws(
    () => fromArray.apply(g, { choice: new Int32Array([3, -1, -1]) }),
    new RangeError("Cannot pick synonym 3 of code 0 at flat index 0: it has 1 eligible"),
  );
  const f32 = { dtype: "float32", shape: [1, 1, 3], data: new Float32Array(3) };
  assert.throws(
    () => fromArray.draw(f32 as unknown as CodeGrids, new Rng(0)),
    new TypeError(
      "Cannot use replaceSynonyms input: expected [B, H, W] int32 host code grids, got a float32 host tensor of shape [1, 1, 3]",
    ),
  );
  assert.throws(() => replaceSynonyms(synonymsJson, { prob: 1.5 }), RangeError);
  assert.throws(() => replaceSynonyms({ x: [1] }), /synonym key "x"/);
});

// ----------------------------------------------------------------------------- swap

Deno.test("swapCodes with the recorded parameters gives swap_out exactly (overlap: second copy wins)", () => {
  const params = Array.from(
    { length: 4 },
    (_, b) => Array.from(toInt32(io.get("swap_params")!).subarray(b * 5, b * 5 + 5)),
  ) as SwapParams;
  const out = swapCodes().apply(ids, params);
  assert.deepEqual(out.data, toInt32(io.get("swap_out")!));
  assert.deepEqual(meta.transforms.swapcode.overlapping, [false, false, false, true]);
});

Deno.test("swapCodes overlapping squares: both read the original, the second assignment wins", () => {
  const g: CodeGrids = {
    dtype: "int32",
    shape: [1, 4, 4],
    data: Int32Array.from({ length: 16 }, (_, i) => i),
  };
  // squares at (0,0) and (1,1), side 2: out[0:2,0:2] = x[1:3,1:3]; out[1:3,1:3] = x[0:2,0:2]
  const out = swapCodes().apply(g, [[2, 0, 0, 1, 1]]);
  assert.deepEqual(Array.from(out.data), [5, 6, 2, 3, 9, 0, 1, 7, 8, 4, 5, 11, 12, 13, 14, 15]);
});

Deno.test("swapCodes draws follow the rule: ps <= n/4, corners in 0..H-ps-1 inclusive, > ps apart", () => {
  const rng = new Rng(5);
  const grids = randomGrids(rng, 2000, 32, 32);
  const t = swapCodes();
  assert.equal(t.description, "swap(scale<=0.25)");
  const params = t.draw(grids, rng);
  let sawTop = false, sawZero = false, maxPs = 0;
  for (const [ps, y0, x0, y1, x1] of params) {
    assert.ok(ps >= 0 && ps <= 7, `ps ${ps}`);
    for (const v of [y0, x0, y1, x1]) {
      assert.ok(v >= 0 && v <= 32 - ps - 1, `corner ${v} with ps ${ps}`);
      if (v === 32 - ps - 1) sawTop = true;
    }
    assert.ok(Math.hypot(y1 - y0, x1 - x0) > ps);
    if (ps === 0) sawZero = true;
    maxPs = Math.max(maxPs, ps);
  }
  assert.ok(sawTop, "the inclusive high H-ps-1 is reachable");
  assert.ok(sawZero && maxPs === 7, `ps range 0..${maxPs}`);
  // same seed, same draws
  assert.deepEqual(swapCodes().draw(grids, new Rng(9)), swapCodes().draw(grids, new Rng(9)));
});

Deno.test("swapCodes keeps the multiset of codes and never modifies its input", () => {
  const rng = new Rng(8);
  const grids = randomGrids(rng, 8, 16, 16);
  const copy = grids.data.slice();
  const { output, params } = runTransform(swapCodes(), grids, rng);
  assert.deepEqual(grids.data, copy);
  params.forEach(([ps, y0, x0, y1, x1], b) => {
    const overlap = Math.abs(y1 - y0) < ps && Math.abs(x1 - x0) < ps;
    if (overlap) return; // an overlapping swap duplicates codes, as in the reference
    const a = Array.from(copy.subarray(b * 256, (b + 1) * 256)).sort((p, q) => p - q);
    const o = Array.from(output.data.subarray(b * 256, (b + 1) * 256)).sort((p, q) => p - q);
    assert.deepEqual(o, a);
  });
});

Deno.test("swapCodes bad input: squares off the grid, wrong count, impossible geometry", () => {
  const g: CodeGrids = { dtype: "int32", shape: [1, 4, 4], data: new Int32Array(16) };
  assert.throws(
    () => swapCodes().apply(g, [[2, 3, 0, 0, 0]]),
    new RangeError("Cannot apply swap [2,3,0,0,0] to sample 0: the squares leave the 4x4 grid"),
  );
  assert.throws(() => swapCodes().apply(g, []), /expected 1 \[ps, y0, x0, y1, x1\] rows/);
  const one: CodeGrids = { dtype: "int32", shape: [1, 1, 1], data: new Int32Array(1) };
  assert.throws(() => swapCodes().draw(one, new Rng(0)), /Cannot place two 0x0 squares/);
  assert.throws(() => swapCodes({ patchScale: [0, 1.5] }), RangeError);
});

// ----------------------------------------------------------------------------- geometry

Deno.test("roundHalfEven is Python's round", () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, 2.4999, 2.5001, 7].map(roundHalfEven), [
    0,
    2,
    2,
    4,
    2,
    3,
    7,
  ]);
});

Deno.test("centerCrop: torchvision's origin (ties to even), for codes and maps", async () => {
  assert.deepEqual(centerCropOrigin(32, 32, 28), [2, 2]);
  assert.deepEqual(centerCropOrigin(33, 31, 28), [2, 2]); // round(2.5) = 2, round(1.5) = 2
  assert.deepEqual(centerCropOrigin(35, 28, 28), [4, 0]); // round(3.5) = 4
  const before = tf.memory().numTensors;
  const codes = tf.tensor3d(ids.data, [4, 32, 32], "int32");
  const c = centerCrop(codes, 28);
  assert.deepEqual(c.shape, [4, 28, 28]);
  const cd = await c.data();
  assert.equal(cd[0], ids.data[2 * 32 + 2]);
  assert.equal(cd[4 * 784 - 1], ids.data[3 * 1024 + 29 * 32 + 29]);
  const x = emb();
  const m = centerCropTransform(28).apply(x, null);
  assert.deepEqual(m.shape, [4, 32, 28, 28]);
  assert.equal(centerCropTransform(28).description, "center_crop(28)");
  assert.throws(() => centerCrop(codes, 33), /Cannot center-crop 33x33 from a 32x32 grid/);
  assert.throws(() => centerCrop(tf.scalar(1), 1), /got a float32 tensor of shape \[\]/);
  tf.dispose([codes, c, x, m]);
  assert.equal(tf.memory().numTensors, before + 1); // the scalar above
});

Deno.test("hflip mirrors exactly the drawn samples; p=0 and p=1", async () => {
  const before = tf.memory().numTensors;
  const x = tf.tensor4d(Float32Array.from({ length: 6 * 2 * 2 * 3 }, (_, i) => i), [6, 2, 2, 3]);
  const t = hflip(0.5);
  const { output, params } = runTransform(t, x, new Rng(4));
  assert.equal(params.length, 6);
  const got = await output.array() as number[][][][];
  const src = await x.array() as number[][][][];
  params.forEach((f, b) => {
    assert.deepEqual(got[b], f ? src[b].map((ch) => ch.map((row) => [...row].reverse())) : src[b]);
  });
  const none = hflip(0).apply(x, hflip(0).draw(x, new Rng(1)));
  assert.deepEqual(await none.data(), await x.data());
  const codes = tf.tensor3d([1, 2, 3, 4], [1, 2, 2], "int32");
  const all = hflip(1).apply(codes, [true]);
  assert.deepEqual(Array.from(await all.data()), [2, 1, 4, 3]);
  assert.equal(all.dtype, "int32");
  assert.throws(() => hflip(0.5).apply(x, [true]), /expected 6 flags, got an array of length 1/);
  tf.dispose([x, output, none, codes, all]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("RRC size rule reproduces the reference's recorded tries and boxes", () => {
  const params = toInt32(io.get("rrc_params")!);
  meta.transforms.rrc.tries.forEach((list: Record<string, number & boolean>[], b: number) => {
    for (const t of list) {
      const r = rrcTry(32, 32, t.area_fraction, t.aspect_ratio);
      assert.deepEqual([r.w, r.h, r.accepted], [t.w, t.h, t.accepted], `sample ${b}`);
    }
    const last = list[list.length - 1];
    assert.deepEqual(
      [last.i, last.j, last.h, last.w],
      Array.from(params.subarray(b * 4, b * 4 + 4)),
    );
  });
});

Deno.test("RRC with the recorded boxes reproduces rrc_out within the fixture tolerance", async () => {
  const before = tf.memory().numTensors;
  const x = emb();
  const p = toInt32(io.get("rrc_params")!);
  const boxes = [0, 1, 2, 3].map((b) => ({
    i: p[b * 4],
    j: p[b * 4 + 1],
    h: p[b * 4 + 2],
    w: p[b * 4 + 3],
  }));
  const out = resizedCrops(x, boxes, 28);
  const ref = toFloat32(io.get("rrc_out")!);
  const got = await out.data();
  let worst = 0, scale = 1;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < ref.length; i++) {
    worst = Math.max(worst, Math.abs(got[i] - ref[i]) / (1e-4 * scale + 1e-4 * Math.abs(ref[i])));
  }
  assert.ok(worst <= 1, `worst ratio ${worst}, max abs diff ${maxDiff(got, ref)}`);
  tf.dispose([x, out]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("RRC draws: fractions in scale, aspect in ratio, boxes inside; fallback clamps the ratio", () => {
  const rng = new Rng(21);
  let fallbacks = 0;
  for (let k = 0; k < 2000; k++) {
    const tries: ReturnType<typeof rrcTry>[] = [];
    const b = drawRrcBox(rng, 32, 32, [0.2, 1], [3 / 4, 4 / 3], tries);
    assert.ok(tries.length >= 1 && tries.length <= 10);
    for (const t of tries) {
      assert.ok(t.areaFraction >= 0.2 && t.areaFraction < 1);
      assert.equal(Math.fround(t.areaFraction), t.areaFraction, "float32 draw");
      assert.ok(t.aspectRatio >= 0.75 - 1e-6 && t.aspectRatio <= 4 / 3 + 1e-6);
    }
    if (!tries[tries.length - 1].accepted) fallbacks++;
    assert.ok(b.i >= 0 && b.j >= 0 && b.i + b.h <= 32 && b.j + b.w <= 32 && b.h > 0 && b.w > 0);
  }
  assert.ok(fallbacks < 5);
  // a 10x40 map: in_ratio 4 > 4/3, so h = 10, w = round(13.33) = 13, centred
  assert.deepEqual(rrcFallbackBox(10, 40, [3 / 4, 4 / 3]), { i: 0, j: 13, h: 10, w: 13 });
  assert.deepEqual(rrcFallbackBox(40, 10, [3 / 4, 4 / 3]), { i: 13, j: 0, h: 13, w: 10 });
  assert.deepEqual(rrcFallbackBox(30, 32, [3 / 4, 4 / 3]), { i: 0, j: 0, h: 30, w: 32 });
  // a scale no try can meet (area > 1 never fits 4x1 with these ratios) ends in the fallback
  const tries: ReturnType<typeof rrcTry>[] = [];
  const fb = drawRrcBox(new Rng(0), 1, 64, [0.9, 1], [3 / 4, 4 / 3], tries);
  assert.equal(tries.length, 10);
  assert.deepEqual(fb, rrcFallbackBox(1, 64, [3 / 4, 4 / 3]));
});

Deno.test("randomResizedCrop + compose: description, shapes, replay from params, no leaks", async () => {
  const before = tf.memory().numTensors;
  const x = emb();
  const pipe = composeTransforms<tf.Tensor>(
    hflip(0.5),
    randomResizedCrop(28, { scale: [0.2, 1] }),
  );
  assert.equal(
    pipe.description,
    "compose(hflip(p=0.5), rrc(28, scale=[0.2,1], ratio=[0.75,1.333]))",
  );
  const { output, params } = pipe.run(x, new Rng(3));
  assert.deepEqual(output.shape, [4, 32, 28, 28]);
  const replay = pipe.apply(x, params);
  assert.deepEqual(await replay.data(), await output.data());
  const again = pipe.run(x, new Rng(3));
  assert.deepEqual(again.params, params);
  const drawn = pipe.draw(x, new Rng(3));
  assert.deepEqual(drawn, params);
  tf.dispose([x, output, replay, again.output]);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => composeTransforms(), RangeError);
  assert.throws(() => pipe.apply(x, [1]), /2 composed transforms with 1 parameter sets/);
});

// ----------------------------------------------------------------------------- backends

const hasAdapter = await (async () => {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  return gpu !== undefined && (await gpu.requestAdapter()) !== null;
})();

/** The whole augmentation chain of a training step, from one seed. */
async function augmentOnce(backend: "cpu" | "wasm" | "webgpu") {
  await initBackend({ backend });
  const before = tf.memory().numTensors;
  const rng = new Rng(2024);
  const codebook = (await readSafetensorsFile(parityPath("codebook.safetensors"))).tensors.get(
    "codebook",
  )!;
  const q = CodeQuantizer.from(codebook);
  const codeStage = composeTransforms<CodeGrids>(replaceSynonyms(synonymsJson), swapCodes());
  const codes = codeStage.run(ids, rng);
  const x = q.embed(codes.output);
  const mapStage = composeTransforms<tf.Tensor4D>(
    hflip<tf.Tensor4D>(0.5),
    randomResizedCrop(28, { scale: [0.2, 1] }),
    colorAdapt(),
    embNoise({ scale: 0.5, std: 0.25 }),
  );
  const maps = mapStage.run(x, rng);
  const mixed = createMixup({ numClasses: 10, mixupAlpha: 0.8, cutmixAlpha: 1 }).run(
    maps.output,
    [1, 2, 3, 4],
    rng,
  );
  const out = q.toCodes(mixed.x);
  const result = {
    params: [codes.params, maps.params, mixed.params],
    codes: Array.from(await out.data()),
    maps: await mixed.x.data(),
    targets: await mixed.targets.data(),
    rngState: rng.getState(),
  };
  tf.dispose([x, maps.output, mixed.x, mixed.targets, out]);
  q.dispose();
  assert.equal(tf.memory().numTensors, before, `${backend} leaked`);
  return result;
}

Deno.test({
  name: "same seed -> same draws, same codes and maps within 1e-5 on cpu, wasm and webgpu",
  sanitizeResources: false,
  fn: async () => {
    const backends = ["cpu", "wasm", ...(hasAdapter ? ["webgpu" as const] : [])] as const;
    const runs = [];
    for (const b of backends) runs.push(await augmentOnce(b));
    await initBackend({ backend: "cpu" });
    const [ref, ...others] = runs;
    others.forEach((r, k) => {
      const name = backends[k + 1];
      assert.deepEqual(r.params, ref.params, `${name} params`);
      assert.deepEqual(r.rngState, ref.rngState, `${name} rng state`);
      assert.deepEqual(r.targets, ref.targets, `${name} targets`);
      assert.ok(
        maxDiff(r.maps, ref.maps) < 1e-5,
        `${name} maps differ by ${maxDiff(r.maps, ref.maps)}`,
      );
      assert.deepEqual(r.codes, ref.codes, `${name} codes`);
    });
    assert.ok(!hasAdapter || backends.length === 3);
  },
});
