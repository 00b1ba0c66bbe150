// The lib/ helpers the topic notebooks call (decodedImages, pairTokenizer, tokenStorage,
// pngBytesPerImage, codeCounts, maskGrid, mtmPredict, compareTokenAdapt, overlayCells,
// imageColumns, gridTable, followRun, liveGridExecutor), on the committed data and weights where they exist.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { compareTokenAdapt, TokenAdapt } from "@lib/adapters";
import { MASK_CELL, maskGrid, MtmModel, mtmPredict, mtmTiny, randomMasking } from "@lib/models";
import { Rng } from "@lib/random";
import {
  $display,
  followRun,
  gridTable,
  imageColumns,
  liveGridExecutor,
  LiveProgress,
  overlayCells,
  plannedSteps,
} from "@lib/report";
import {
  expandGrid,
  inProcessExecutor,
  prepareBudgets,
  readConfigFile,
  resolveGridConfig,
  runGrid,
} from "@lib/train";
import {
  decodeCodes,
  decodedImages,
  loadDecoder,
  loadTokenizer,
  pairTokenizer,
} from "@lib/tokenizer";
import {
  codeCounts,
  CodeQuantizer,
  FASHION_MNIST_CLASSES,
  openTokenDataset,
  pngBytesPerImage,
  summarizeTokenDataset,
  TokenDataset,
  tokenStorage,
} from "@lib/tokens";

await initBackend({ backend: "wasm" });

const TEST8 = "data/fmnist8/fmnist-test-token.data.bin.gz";
const TA8 = "results/tokenadapt/fmnist8/tokenadapt.safetensors";

Deno.test("decodedImages equals decodeCodes laid out [N, H, W, C] as uint8", async () => {
  const decoder = await loadDecoder("data/fmnist8");
  const ds = await openTokenDataset(TEST8, { codebookSize: 256 });
  try {
    const before = tf.memory().numTensors;
    const codes = ds.readBatch([0, 1, 2]);
    const img = decodedImages(decoder, codes);
    assert.deepEqual(img.shape, [3, 28, 28, 1]);
    assert.equal(img.dtype, "uint8");
    const ref = decodeCodes(decoder, codes);
    for (const i of [0, 100, 783, 784 + 400, 2 * 784 + 27]) {
      const v = Math.round(Math.min(1, Math.max(0, ref.data[i])) * 255);
      assert.equal(img.data[i], v, `pixel ${i}`);
    }
    // the same from a tensor and from a HostTensor
    const t = tf.tensor3d(codes, [3, 8, 8], "int32");
    assert.deepEqual(decodedImages(decoder, t).data, img.data);
    t.dispose();
    const host = { dtype: "int32" as const, shape: [3, 8, 8], data: codes };
    assert.deepEqual(decodedImages(decoder, host).data, img.data);
    assert.equal(tf.memory().numTensors, before);
    assert.throws(
      () => decodedImages(decoder, { dtype: "int32", shape: [1, 4, 4], data: new Int32Array(16) }),
      { name: "TypeError", message: "Cannot decode codes of shape [1,4,4]: expected [B, 8, 8]" },
    );
    assert.throws(() => decodedImages(decoder, new Int32Array(64).fill(300)), RangeError);
  } finally {
    decoder.dispose();
  }
});

Deno.test("tokenStorage measures the committed test split as the data card states", async () => {
  const s = await tokenStorage(TEST8);
  assert.equal(s.records, 10000);
  assert.equal(s.gridSide, 8);
  assert.equal(s.dataBytes, (await Deno.stat(TEST8)).size);
  assert.equal(s.labelBytes, 20000);
  // data/README.md: 54.9 bytes per image (data + index), test split
  assert.ok(Math.abs(s.bytesPerImage - 54.933) < 1e-9, String(s.bytesPerImage));
  await assert.rejects(
    () => tokenStorage("data/fmnist8/missing-token.data.bin.gz"),
    Deno.errors.NotFound,
  );
});

Deno.test("pngBytesPerImage encodes each image once and averages", () => {
  const flat = { dtype: "uint8" as const, shape: [3, 8, 8], data: new Uint8Array(192) };
  const noisy = new Uint8Array(192);
  for (let i = 0; i < noisy.length; i++) noisy[i] = (i * 97 + 13) % 251;
  const r = pngBytesPerImage(flat);
  assert.equal(r.images, 3);
  assert.equal(r.bytes, 3 * r.bytesPerImage);
  const n = pngBytesPerImage({ ...flat, data: noisy }, 2);
  assert.equal(n.images, 2);
  assert.ok(n.bytesPerImage > r.bytesPerImage, "noise compresses worse than a flat image");
  assert.throws(
    () => pngBytesPerImage({ dtype: "float32", shape: [1, 2, 2], data: new Float32Array(4) }),
    TypeError,
  );
  assert.throws(() => pngBytesPerImage(flat, 0), RangeError);
});

Deno.test("codeCounts agrees with summarizeTokenDataset's top codes and totals", async () => {
  const ds = await openTokenDataset(TEST8, { codebookSize: 256 });
  const c = codeCounts(ds);
  assert.equal(c.counts.length, 256);
  assert.equal(c.total, 10000 * 64);
  assert.equal(c.counts.reduce((a, b) => a + b, 0), c.total);
  const s = summarizeTokenDataset(ds, { top: 5 });
  for (const t of s.topCodes) assert.equal(c.counts[t.code], t.count);
  const part = codeCounts(ds, { records: 10 });
  assert.equal(part.records, 10);
  assert.equal(part.total, 640);
  const tiny = TokenDataset.fromBuffers(new Uint8Array([1, 1, 2, 0]), new Float64Array([0, 4]));
  assert.deepEqual(Array.from(codeCounts(tiny).counts), [1, 2, 1]);
  assert.throws(() => codeCounts(tiny, { codebookSize: 2 }), {
    name: "RangeError",
    message: 'Cannot count code 2 of record 0 of "<data>": the histogram has 2 bins',
  });
  assert.throws(() => codeCounts(tiny, { records: 0 }), RangeError);
  assert.equal(FASHION_MNIST_CLASSES[ds.labels![0]], "Ankle boot");
});

Deno.test("maskGrid spreads patch states over p x p tokens; dropped is a subset of masked", () => {
  const plan = randomMasking(2, 16, new Rng(3), mtmTiny());
  const g = maskGrid(plan, 2);
  assert.deepEqual(g.shape, [2, 8, 8]);
  let dropped = 0, masked = 0;
  for (let b = 0; b < 2; b++) {
    for (let k = 0; k < 16; k++) {
      const want = plan.dropped[b * 16 + k]
        ? MASK_CELL.dropped
        : plan.masked[b * 16 + k]
        ? MASK_CELL.masked
        : MASK_CELL.visible;
      const y = Math.floor(k / 4) * 2, x = (k % 4) * 2;
      for (const [dy, dx] of [[0, 0], [0, 1], [1, 0], [1, 1]]) {
        assert.equal(g.data[(b * 8 + y + dy) * 8 + x + dx], want);
      }
    }
  }
  for (const v of g.data) {
    if (v === MASK_CELL.dropped) dropped++;
    if (v !== MASK_CELL.visible) masked++;
  }
  assert.equal(dropped, 4 * 2 * plan.numDropped);
  assert.equal(masked, 4 * 2 * plan.numMasked);
  assert.throws(() => maskGrid({ ...plan, numPatches: 15 }, 2), RangeError);
});

Deno.test("mtmPredict keeps visible codes, fills masked ones with the argmax, no leaks", () => {
  const model = new MtmModel(mtmTiny({ codebookSize: 16 }), new Rng(0));
  const data = new Int32Array(2 * 64);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 16;
  const codes = tf.tensor3d(data, [2, 8, 8], "int32");
  try {
    const before = tf.memory().numTensors;
    const p = mtmPredict(model, codes, { rng: new Rng(1) });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(p.truth.data, data);
    let masked = 0, hits = 0;
    for (let i = 0; i < data.length; i++) {
      if (p.mask.data[i] === MASK_CELL.visible) assert.equal(p.filled.data[i], data[i]);
      else {
        assert.equal(p.filled.data[i], p.predicted.data[i]);
        masked++;
        if (p.predicted.data[i] === data[i]) hits++;
      }
      assert.ok(p.predicted.data[i] >= 0 && p.predicted.data[i] < 16);
    }
    assert.equal(p.maskedAccuracy, hits / masked);
    assert.ok(Number.isFinite(p.loss) && p.loss > 0);
    // the same plan gives the same prediction (eval mode: no dropout)
    const again = mtmPredict(model, codes, { plan: p.plan });
    assert.deepEqual(again.predicted.data, p.predicted.data);
    assert.throws(() => mtmPredict(model, codes, {}), TypeError);
  } finally {
    codes.dispose();
    model.dispose();
  }
});

Deno.test("compareTokenAdapt on the committed TokenAdapt: TokenAdapt beats naive, no leaks", async () => {
  const tok = await loadTokenizer("data/fmnist8");
  const { model } = await TokenAdapt.load(TA8);
  const quantizer = CodeQuantizer.from(tok.codebook);
  const pixels = new Uint8Array(16 * 28 * 28);
  // real images: decode 16 test records (the tokenizer's own reconstruction is a fine input)
  const ds = await openTokenDataset(TEST8, { codebookSize: 256 });
  const dec = decodedImages(tok.decoder, ds.readBatch(Array.from({ length: 16 }, (_, i) => i)));
  pixels.set(dec.data);
  const images = { dtype: "uint8" as const, shape: [16, 28, 28], data: pixels };
  try {
    const before = tf.memory().numTensors;
    const pair = pairTokenizer(tok);
    assert.deepEqual(
      [pair.frameSize, pair.imageSize, pair.channels, pair.gridSize],
      [32, 28, 1, 8],
    );
    const cmp = compareTokenAdapt(model, images, pair, quantizer, {}, new Rng(0));
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(cmp.augmented.shape, [16, 28, 28, 1]);
    for (const k of ["original", "target", "naive", "tokenAdapt"] as const) {
      assert.deepEqual(cmp[k].shape, [16, 8, 8], k);
    }
    const mean = (a: Float64Array) => a.reduce((s, v) => s + v, 0) / a.length;
    // results/tokenadapt/README.md: 40.1% vs 7.1% on 1000 images; 16 images are noisier
    assert.ok(
      mean(cmp.agreement.tokenAdapt) > mean(cmp.agreement.naive) + 0.1,
      `${mean(cmp.agreement.tokenAdapt)} vs ${mean(cmp.agreement.naive)}`,
    );
    // the same seed draws the same A
    const again = compareTokenAdapt(model, images, pair, quantizer, {}, new Rng(0));
    assert.deepEqual(again.tokenAdapt.data, cmp.tokenAdapt.data);
    assert.throws(
      () =>
        compareTokenAdapt(
          model,
          { dtype: "uint8", shape: [1, 32, 32], data: new Uint8Array(1024) },
          pair,
          quantizer,
          {},
          new Rng(0),
        ),
      TypeError,
    );
  } finally {
    quantizer.dispose();
    model.dispose();
    tok.dispose();
  }
});

Deno.test("overlayCells tints the cells of a padded frame and leaves the rest", () => {
  // 4x4 images in an 8-pixel frame split into 2x2 cells: each image pixel's cell is
  // floor((p + 2) / 4), so pixels 0-1 are in cell 0 and 2-3 in cell 1
  const img = { dtype: "uint8" as const, shape: [1, 4, 4], data: new Uint8Array(16).fill(100) };
  const cells = { dtype: "int32" as const, shape: [1, 2, 2], data: new Int32Array([0, 1, 2, 0]) };
  const out = overlayCells(img, cells, {
    colors: { 1: [255, 0, 0], 2: [0, 0, 255] },
    alpha: 0.5,
    frameSize: 8,
  });
  assert.deepEqual(out.shape, [1, 4, 4, 3]);
  const px = (y: number, x: number) =>
    Array.from(out.data.subarray((y * 4 + x) * 3, (y * 4 + x) * 3 + 3));
  assert.deepEqual(px(0, 0), [100, 100, 100]);
  assert.deepEqual(px(1, 3), [178, 50, 50]);
  assert.deepEqual(px(3, 0), [50, 50, 178]);
  assert.deepEqual(px(3, 3), [100, 100, 100]);
  assert.throws(() => overlayCells(img, cells, { colors: {}, alpha: 2 }), RangeError);
  assert.throws(() => overlayCells(img, { ...cells, shape: [2, 2, 2] }, { colors: {} }), TypeError);
});

Deno.test("imageColumns shows one row per sample with labels, grid and text", () => {
  const a = { dtype: "uint8" as const, shape: [2, 3, 3], data: new Uint8Array(18).fill(10) };
  const b = { dtype: "uint8" as const, shape: [2, 3, 3, 3], data: new Uint8Array(54).fill(200) };
  const v = imageColumns([{ label: "gray", images: a }, { label: "rgb <x>", images: b }], {
    rowLabels: ["r0", "r1"],
    notes: ["n0", "n1"],
    caption: "cap",
  });
  const bundle = v[$display]();
  const html = bundle["text/html"] as string;
  assert.equal((html.match(/<img /g) ?? []).length, 4);
  assert.ok(html.includes("rgb &lt;x&gt;") && html.includes("r1") && html.includes("n1"));
  assert.equal(typeof bundle["image/png"], "string");
  const grid = v.grid();
  assert.deepEqual(grid.shape, [2 * 3 + 3 * 2, 2 * 3 + 3 * 2, 3]);
  assert.equal(String(v), 'Image columns "cap" (2 rows of 3x3): gray | rgb <x>');
  assert.throws(
    () =>
      imageColumns([{ label: "a", images: a }, { label: "c", images: { ...a, shape: [3, 3, 2] } }]),
    TypeError,
  );
  assert.throws(() => imageColumns([{ label: "a", images: a }], { rowLabels: ["x"] }), TypeError);
  assert.throws(() => imageColumns([]), TypeError);
});

Deno.test("gridTable lays row-major values out as rows and columns", () => {
  const t = gridTable([1, 2, 3, 4, 5, 6], 3);
  assert.deepEqual(t.columnNames(), ["row", "c0", "c1", "c2"]);
  assert.deepEqual(t.objects(), [{ row: 0, c0: 1, c1: 2, c2: 3 }, { row: 1, c0: 4, c1: 5, c2: 6 }]);
  assert.deepEqual(gridTable([1, 2], 2, { rowColumn: null, columnPrefix: "x" }).columnNames(), [
    "x0",
    "x1",
  ]);
  assert.throws(() => gridTable([1, 2, 3], 2), RangeError);
});

Deno.test("followRun turns step records appended to log.jsonl into progress updates", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const live = new LiveProgress({ total: 3, output: "none" });
    const f = followRun(dir, live, { intervalMs: 10 });
    await new Promise((r) => setTimeout(r, 30)); // no log yet: waits
    const write = (r: unknown) =>
      Deno.writeTextFile(`${dir}/log.jsonl`, JSON.stringify(r) + "\n", { append: true });
    await write({ type: "start", seed: 0 });
    await write({ type: "step", step: 1, loss: 3, lr: 0.1, epoch: 0 });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(f.seen, 1); // read while the "run" goes on
    await write({ type: "step", step: 2, loss: 2, lr: 0.1 });
    await Deno.writeTextFile(`${dir}/log.jsonl`, '{"type": "step", "st', { append: true });
    await f.stop("done");
    assert.equal(f.seen, 2); // the incomplete line is not read
    assert.deepEqual(live.rows, [{ step: 1, loss: 3, lr: 0.1 }, { step: 2, loss: 2, lr: 0.1 }]);
    assert.throws(() => live.update(3), RangeError); // finished
    // a line that is not JSON fails the follower, named
    const bad = followRun(dir, new LiveProgress({ total: 1, output: "none" }), { intervalMs: 10 });
    await Deno.writeTextFile(`${dir}/log.jsonl`, 'ep": 1}\nnot json\n', { append: true });
    await assert.rejects(() => bad.stop(), {
      name: "SyntaxError",
      // the incomplete line 4 was completed by this write and read; line 5 is not JSON
      message: new RegExp(`^Cannot parse line 5 of "${dir}/log.jsonl"`),
    });
    assert.throws(() => followRun(dir, live, { intervalMs: 1 }), RangeError);
    // a log rewritten from scratch (a run restarted before its first checkpoint) is read again
    await Deno.remove(`${dir}/log.jsonl`);
    const h = new LiveProgress({ total: 2, output: "none" });
    const follower = followRun(dir, h, { intervalMs: 10 });
    await Deno.writeTextFile(
      `${dir}/log.jsonl`,
      JSON.stringify({ type: "step", step: 1, loss: 7 }) + "\n",
    );
    await new Promise((r) => setTimeout(r, 50));
    await Deno.writeTextFile(
      `${dir}/log.jsonl`,
      JSON.stringify({ type: "step", step: 1, loss: 5 }) + "\n",
    );
    await follower.stop();
    assert.deepEqual(h.rows.map((r) => r.loss), [7, 5]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("liveGridExecutor runs a real grid run; plannedSteps is the step count it took", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tiny = await readConfigFile("configs/grid_tiny.json") as Record<string, unknown>;
    const grid = resolveGridConfig({
      ...tiny,
      seeds: [0],
      budgets: [{ id: "fm8-40", tokens: "fmnist8", records: 40 }],
      cells: [{ budgets: ["fm8-40"], arms: ["seit"] }],
    }, "test");
    const budgets = await prepareBudgets(grid, `${dir}/data`, () => {});
    const specs = expandGrid(grid, budgets, { runsDir: `${dir}/runs` });
    assert.equal(specs.length, 1);
    const execute = liveGridExecutor(inProcessExecutor({ print: () => {} }), { output: "none" });
    const [r] = await runGrid(specs, { execute, print: () => {} });
    assert.equal(r.status, "ran", r.message);
    const metrics = JSON.parse(await Deno.readTextFile(`${specs[0].dir}/metrics.json`));
    assert.equal(plannedSteps(specs[0]), metrics.steps);
    // a failing run fails through the wrapper (and its display is finished, not left open)
    const broken = { ...specs[0], id: "broken", dir: `${dir}/runs/broken` };
    broken.config = { ...broken.config, codebook: `${dir}/missing.npy` };
    const [b] = await runGrid([broken], { execute, print: () => {} });
    assert.equal(b.status, "failed");
    assert.match(b.message ?? "", /missing\.npy/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
