/**
 * The oracle TokenAdapt half (lib/train/augment/oracle.ts, grid arm `ota`) on the embedded
 * Fashion-MNIST tokens, their tokenizer (data/fmnist8) and the Fashion-MNIST training images
 * they were made from: it is the tokenizer's codes of the transformed pixel images; the `ota`
 * step draws exactly what the `ta` step draws and makes the same targets; the other arms'
 * steps are unchanged; it refuses missing or mismatched images and tokenizers by name.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  applyGeometric,
  type GeometricParams,
  type MixupParams,
  resolveGeometricAugConfig,
  TokenAdapt,
} from "@lib/adapters";
import { Rng } from "@lib/random";
import { loadImages, loadTokenizer, pairTokenizer } from "@lib/tokenizer";
import { CodeQuantizer, loadCodebook, openTokenDataset } from "@lib/tokens";
import { augmentPixels, drawGeometricParams } from "@lib/adapters";
import {
  augmentStepForArm,
  checkRunAugment,
  createAugmentStep,
  createTokenAdaptOracle,
  expandGrid,
  gridRecipes,
  type GridRunSpec,
  identityGeometry,
  openRunAugment,
  openTokenAdaptOracle,
  OracleMismatchError,
  oracleTokens,
  plannedBudgets,
  prepareBudgets,
  readConfigFile,
  resolveAugmentStepConfig,
  resolveGridConfig,
} from "@lib/train";
import { armDigest } from "./_arm_digest.ts";

await initBackend({ backend: "wasm" });

const IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
const TRAIN = "data/fmnist8/fmnist-train-token.data.bin.gz";
const TA_V2 = "results/tokenadapt/fmnist8-v2/tokenadapt.safetensors";

const vq = await loadTokenizer("data/fmnist8");
const tok = pairTokenizer(vq);
const all = (await loadImages(IMAGES)).images;
const stored = await openTokenDataset(TRAIN, { codebookSize: 256 });

/** The first `count` training records' images as an oracle (record i = image i). */
function firstRecords(count: number) {
  const per = 28 * 28;
  return createTokenAdaptOracle(
    { dtype: "uint8", shape: [count, 28, 28], data: all.data.subarray(0, count * per) },
    tok,
  );
}

function agreement(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) s++;
  return s / a.length;
}

async function v2Specs(): Promise<GridRunSpec[]> {
  const g = resolveGridConfig(await readConfigFile("configs/grid_fmnist_v2.json"), "v2");
  return expandGrid(g, await plannedBudgets(g, "results/grid-v2/data"), { runsDir: "runs" });
}

Deno.test("oracleTokens: identity geometry and no mixing give T(x), the stored tokens", async () => {
  const B = 16;
  const oracle = firstRecords(B);
  const idx = Array.from({ length: B }, (_, i) => i);
  const x = oracle.images(idx);
  const before = tf.memory().numTensors;
  const geo = identityGeometry(resolveGeometricAugConfig({}));
  const gp = drawGeometricParams([B, 32, 16, 16], 16, geo, new Rng(0));
  const out = oracleTokens(x, gp, tok, null);
  assert.equal(out.targets, null);
  assert.deepEqual(out.codes.shape, [B, 8, 8]);
  const got = await out.codes.data();
  const direct = tok.encode(x);
  // the identity warp at frame resolution is exact: the same codes as tokenizing x itself
  assert.deepEqual(got, await direct.data());
  // and the stored tokens up to float near-ties of another run of the encoder
  const a = agreement(got, stored.readBatch(idx));
  assert.ok(a >= 0.995, `agreement with the stored tokens ${a}`);
  tf.dispose([out.codes, direct]);
  assert.equal(tf.memory().numTensors, before, "leak-free");
  x.dispose();
});

Deno.test("oracleTokens: a drawn A is TokenAdapt training's pixel side T(A(x)); CutMix/Mixup mix the warped frames", async () => {
  const B = 8;
  const oracle = firstRecords(B);
  const x = oracle.images(Array.from({ length: B }, (_, i) => i));
  // a draw where the flip and the affine chain fire and the crops are not the whole grid
  const geo = resolveGeometricAugConfig({ cropScale: [0.35, 1], chainProb: 1, flipProb: 1 });
  const gp: GeometricParams = drawGeometricParams([B, 32, 16, 16], 16, geo, new Rng(4));
  assert.ok(gp.flip[0] && gp.steps[0].length > 0, "A is not the identity");
  const plain = oracleTokens(x, gp, tok, null);
  const want = tf.tidy(() => tok.encode(augmentPixels(x, gp, tok)));
  assert.deepEqual(await plain.codes.data(), await want.data());
  const ident = tok.encode(x);
  const moved = 1 - agreement(await plain.codes.data(), await ident.data());
  assert.ok(moved > 0.3, `A changes the codes (${moved})`);
  // mixing: the mixer's parameters drawn on 2m = 16, the box scaled to the 32-pixel frame
  const { createMixup } = await import("@lib/adapters");
  const mixer = createMixup({ numClasses: 10, mixupAlpha: 0.8, cutmixAlpha: 1 });
  const labels = Int32Array.from(stored.labelsOf(Array.from({ length: B }, (_, i) => i)));
  for (
    const params of [
      { lam: 0.625, cutmix: true, box: { yl: 2, yh: 10, xl: 4, xh: 10 } },
      { lam: 0.3, cutmix: false, box: null },
    ] as MixupParams[]
  ) {
    const got = oracleTokens(x, gp, tok, { mixer, params, labels });
    const expect = tf.tidy(() => {
      const framed = x.pad([[0, 0], [0, 0], [2, 2], [2, 2]]) as tf.Tensor4D;
      const w = applyGeometric(framed, gp);
      let m: tf.Tensor4D;
      if (params.cutmix) {
        const b = params.box!;
        const mask = tf.buffer([1, 1, 32, 32]);
        for (let i = 2 * b.yl; i < 2 * b.yh; i++) {
          for (let j = 2 * b.xl; j < 2 * b.xh; j++) mask.set(1, 0, 0, i, j);
        }
        const k = mask.toTensor();
        m = w.mul(tf.sub(1, k)).add(tf.reverse(w, 0).mul(k)) as tf.Tensor4D;
      } else m = w.mul(params.lam).add(tf.reverse(w, 0).mul(1 - params.lam)) as tf.Tensor4D;
      const crop = m.slice([0, 0, 2, 2], [B, 1, 28, 28]).clipByValue(0, 1) as tf.Tensor4D;
      return tok.encode(crop);
    });
    assert.deepEqual(
      await got.codes.data(),
      await expect.data(),
      `mixed (cutmix ${params.cutmix})`,
    );
    const t = mixer.apply(tf.zeros([B, 1, 16, 16]) as tf.Tensor4D, labels, params);
    assert.deepEqual(await got.targets!.data(), await t.targets.data(), "the mixing's targets");
    tf.dispose([got.codes, got.targets!, expect, t.x, t.targets]);
  }
  tf.dispose([x, plain.codes, want, ident]);
});

Deno.test("the ota step draws what the ta step draws and makes the same targets and base half; its TokenAdapt half is T(Mix(A(x)))", async () => {
  const B = 16;
  const oracle = firstRecords(64);
  const q = CodeQuantizer.from(await loadCodebook("data/fmnist8/codebook.npy", { size: 256 }));
  const ta = (await TokenAdapt.load(TA_V2)).model;
  const specs = await v2Specs();
  const cfg = (id: string) => {
    const c = specs.find((s) => s.id === id)!.config as Record<string, unknown>;
    return augmentStepForArm(
      {
        ...(c.augmentSettings as object),
        numClasses: 10,
        size: 8,
        labelSmoothing: c.smoothing as number,
      },
      c.augment as never,
    );
  };
  const taStep = createAugmentStep(cfg("ft-ta-fm8-600-s0"), { quantizer: q, tokenAdapt: ta });
  const otaCfg = cfg("ft-ota-fm8-600-s0");
  assert.equal(otaCfg.tokenAdaptSource, "oracle");
  assert.deepEqual({ ...otaCfg, tokenAdaptSource: "tokenadapt" }, cfg("ft-ta-fm8-600-s0"));
  const otaStep = createAugmentStep(otaCfg, { quantizer: q, oracle });
  let sawMix = false, sawNoise = false;
  for (let i = 0; i < 12; i++) {
    const indices = Int32Array.from({ length: B }, (_, j) => (i * 5 + j * 3) % 64);
    const codes = stored.readBatchTensor(Array.from(indices));
    const labels = Int32Array.from(stored.labelsOf(Array.from(indices)));
    const input = { codes, labels, epoch: 0, step: i, indices };
    const before = tf.memory().numTensors;
    const a = taStep.run(input, new Rng(100 + i));
    const o = otaStep.run(input, new Rng(100 + i));
    assert.deepEqual(
      JSON.parse(JSON.stringify(o.record)),
      JSON.parse(JSON.stringify(a.record)),
      `batch ${i}: the same draws`,
    );
    assert.deepEqual(await o.targets!.data(), await a.targets!.data(), `batch ${i}: targets`);
    const h = B / 2;
    const [aBase, oBase] = [a.codes.slice([0], [h]), o.codes.slice([0], [h])];
    assert.deepEqual(await oBase.data(), await aBase.data(), `batch ${i}: the base half`);
    // the TokenAdapt half: T(Mix(A(x))) with the recorded draws (then the colour op, if any)
    const gp = o.record.geometric as GeometricParams;
    const mp = o.record.tokenAdaptMix as MixupParams;
    sawMix ||= mp.lam !== 1;
    const x = oracle.images(indices.subarray(h));
    const { createMixup } = await import("@lib/adapters");
    const mixer = createMixup({ numClasses: 10, mixupAlpha: 0.8, cutmixAlpha: 1 });
    const want = oracleTokens(x, gp, tok, { mixer, params: mp, labels: labels.subarray(h) });
    const oHalf = o.codes.slice([h], [h]);
    const got = await oHalf.data();
    const touched = new Set(o.record.colorSamples.filter((s) => s >= h).map((s) => s - h));
    sawNoise ||= touched.size > 0;
    const w = await want.codes.data();
    for (let s = 0; s < h; s++) {
      if (touched.has(s)) continue; // Emb-Noise on this sample: its codes moved
      assert.deepEqual(got.subarray(s * 64, (s + 1) * 64), w.subarray(s * 64, (s + 1) * 64));
    }
    tf.dispose([a.codes, a.targets!, o.codes, o.targets!, aBase, oBase, oHalf, x, want.codes]);
    tf.dispose(want.targets!);
    assert.equal(tf.memory().numTensors, before, `batch ${i}: leak-free`);
    codes.dispose();
  }
  assert.ok(sawMix && sawNoise, "the batches covered mixing and Emb-Noise");
  ta.dispose();
  q.dispose();
});

Deno.test("the other arms' steps are unchanged by the oracle arm (digests from before it)", async () => {
  // computed at ebaaa58 (before the oracle arm) with the same armDigest, wasm
  const want: Record<string, string> = {
    "ft-seit-fm8-600-s0": "3fa95cecd7a10f28a0c2f6e75129405af92b263949a6c361773ce3d12f897e91",
    "ft-ta-fm8-600-s0": "9a90a549161366ee9f4d989ceb71589e7b39b0f78ac0dc0b1a99f76be5e56e44",
    "ft-ita-fm8-600-s0": "99f31b588f66cd267d4386e8e95f31d03d3995dc515c778d43aec039446da687",
    "ft-seitpp_nomtm-fm8-600-s0":
      "f0285034c1b69115833af1755df46cd29dcc55b01a6467606aa1a86638e42726",
  };
  const specs = await v2Specs();
  for (const [id, digest] of Object.entries(want)) {
    const s = specs.find((x) => x.id === id)!;
    assert.equal(s.config.oracleImages, undefined, `${id}: no oracle keys in its config`);
    assert.equal(await armDigest({ ...s.config, batchSize: 8 }, 6, 8), digest, id);
  }
  const ota = specs.find((x) => x.id === "ft-ota-fm8-600-s0")!.config;
  assert.equal(ota.tokenAdaptWeights, null);
  assert.equal(ota.oracleImages, IMAGES);
  assert.equal(ota.oracleTokenizer, "data/fmnist8");
});

Deno.test("the ota run maps its budget's records to their images (budget.json) and refuses images that are not the tokens'", async () => {
  const dir = await Deno.makeTempDir({ prefix: "seitpp-oracle-" });
  try {
    const g = resolveGridConfig({
      ...(await readConfigFile("configs/grid_fmnist_v2.json") as object),
      budgets: [{ id: "fm8-80", tokens: "fmnist8", records: 80 }],
      cells: [{ budgets: ["fm8-80"], arms: ["ota"] }],
    }, "grid");
    const budgets = await prepareBudgets(g, join(dir, "data"));
    const spec = expandGrid(g, budgets, { runsDir: join(dir, "runs") })[0];
    const c = spec.config as Record<string, unknown>;
    const data = await openTokenDataset(budgets[0].train, { codebookSize: 256 });
    const opened = await openTokenAdaptOracle(
      { images: IMAGES, tokenizer: "data/fmnist8", train: budgets[0].train },
      data,
    );
    assert.ok(opened.agreement >= 0.995, `agreement ${opened.agreement}`);
    assert.equal(opened.oracle.records, 80);
    // record k is image budget.indices[k] of the full set
    const k = 7, img = opened.oracle.images([k]);
    const per = 28 * 28, src = budgets[0].indices[k];
    assert.deepEqual(
      Array.from(await img.data()),
      Array.from(Float32Array.from(all.data.subarray(src * per, (src + 1) * per), (v) => v / 255)),
    );
    img.dispose();
    opened.dispose();
    // the step through the launch path, with the record indices of a batch
    const step = (await openRunAugment("finetune", { ...c, batchSize: 8 } as never))!;
    const idx = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    const codes = data.readBatchTensor(Array.from(idx));
    const input = {
      codes,
      labels: Int32Array.from(data.labelsOf(Array.from(idx))),
      epoch: 0,
      step: 0,
    };
    assert.throws(
      () => step.step.hook(input, new Rng(1)),
      (e: Error) => e instanceof TypeError && /needs the batch's 8 record indices/.test(e.message),
    );
    const out = step.step.hook({ ...input, indices: idx }, new Rng(1));
    tf.dispose([out.codes, out.targets!, codes]);
    step.dispose();
    // the wrong images: budget.json shifted by one record
    const manifest = join(dir, "data", "fm8-80", "budget.json");
    const m = JSON.parse(await Deno.readTextFile(manifest));
    await Deno.writeTextFile(
      manifest,
      JSON.stringify({ ...m, indices: m.indices.map((i: number) => i + 1) }),
    );
    await assert.rejects(
      () =>
        openTokenAdaptOracle(
          { images: IMAGES, tokenizer: "data/fmnist8", train: budgets[0].train },
          data,
        ),
      (e: Error) =>
        e instanceof OracleMismatchError &&
        e.message.includes(`do not match the tokens of "${budgets[0].train}"`) &&
        e.agreement < 0.5,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the oracle arm is refused, by name, without its images or tokenizer", async () => {
  const specs = await v2Specs();
  const c = specs.find((x) => x.id === "ft-ota-fm8-600-s0")!.config as Record<string, unknown>;
  assert.throws(
    () => checkRunAugment("finetune", { ...c, oracleImages: null } as never),
    (e: Error) => e instanceof TypeError && /needs config key oracleImages/.test(e.message),
  );
  assert.throws(
    () => checkRunAugment("finetune", { ...c, oracleImages: null, oracleTokenizer: null } as never),
    (e: Error) => e instanceof TypeError && /oracleImages .* and oracleTokenizer/.test(e.message),
  );
  const q = CodeQuantizer.from(await loadCodebook("data/fmnist8/codebook.npy", { size: 256 }));
  assert.throws(
    () =>
      createAugmentStep(resolveAugmentStepConfig({ size: 8, tokenAdaptSource: "oracle" }), {
        quantizer: q,
      }),
    (e: Error) =>
      e instanceof TypeError &&
      /no oracle \(the training images and the tokenizer\)/.test(e.message),
  );
  q.dispose();
  const data = await openTokenDataset(TRAIN, { codebookSize: 256 });
  await assert.rejects(
    () =>
      openTokenAdaptOracle({
        images: "/nonexistent/x-idx3-ubyte.gz",
        tokenizer: "data/fmnist8",
        train: TRAIN,
      }, data),
    (e: Error) => e instanceof Deno.errors.NotFound && /pixel images.*oracleImages/.test(e.message),
  );
  await assert.rejects(
    () =>
      openTokenAdaptOracle({ images: IMAGES, tokenizer: "/nonexistent/tok", train: TRAIN }, data),
    (e: Error) =>
      e instanceof Deno.errors.NotFound && /the tokenizer.*oracleTokenizer/.test(e.message),
  );
  // a grid whose token set names no images cannot run ota
  assert.throws(
    () =>
      resolveGridConfig({
        ...(JSON.parse(Deno.readTextFileSync("configs/grid_fmnist_v2.json"))),
        tokens: {
          fmnist8: {
            train: TRAIN,
            test: "data/fmnist8/fmnist-test-token.data.bin.gz",
            codebook: "data/fmnist8/codebook.npy",
            tokenAdapt: null,
            images: null,
            tokenizer: "data/fmnist8",
          },
        },
        budgets: [{ id: "fm8-600", tokens: "fmnist8", records: 600 }],
        cells: [{ budgets: ["fm8-600"], arms: ["ota"] }],
      }, "g"),
    (e: Error) =>
      e instanceof RangeError && /arm "ota" re-tokenizes .* names no images/.test(e.message),
  );
});

Deno.test("deno task recipe --arm ota: the TokenAdapt half is the oracle, with its files; ta's is TokenAdapt's", async () => {
  const g = resolveGridConfig(await readConfigFile("configs/grid_fmnist_v2.json"), "v2");
  const budgets = await plannedBudgets(g, "results/grid-v2/data");
  const [ota] = gridRecipes(g, budgets, "ota");
  const [ta] = gridRecipes(g, budgets, "ta");
  assert.equal(ota.finetune!.arm, "oracle-tokenadapt");
  assert.equal(ota.finetune!.tokenAdaptHalf.source, "oracle");
  assert.deepEqual(ota.finetune!.tokenAdaptHalf.oracle, {
    images: IMAGES,
    tokenizer: "data/fmnist8",
  });
  assert.equal(ta.finetune!.tokenAdaptHalf.source, "tokenadapt");
  assert.equal(ta.finetune!.tokenAdaptHalf.oracle, null);
  // everything else of the step is ta's
  const strip = (r: typeof ota.finetune) =>
    JSON.parse(
      JSON.stringify({
        ...r,
        arm: null,
        tokenAdaptHalf: { ...r!.tokenAdaptHalf, source: null, oracle: null },
      }),
    );
  assert.deepEqual(strip(ota.finetune), strip(ta.finetune));
  const { recipeLines } = await import("../../tasks/recipe.ts");
  const text = recipeLines(ota.finetune!).join("\n");
  assert.match(text, /TokenAdapt half \(50% of the batch\), ORACLE \(no f, no g\)/);
  assert.match(text, /T\(Mix\(A\(x\)\)\)/);
});
