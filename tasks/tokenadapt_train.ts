/**
 * `deno task tokenadapt:train [--config <json>] [--out <dir>] [--backend wasm]
 *  [--init <weights.safetensors>] [--key=value ...]`
 *
 * Trains a small TokenAdapt on this project's tokenizer (pairs of tokens of an image and of
 * its geometrically augmented version, see `@lib/adapters` tokenadapt_train), then measures
 * on held-out test images how often its codes agree with the tokens of the augmented image,
 * against the naive alternative (augment the token embedding map itself, re-quantize) and
 * against leaving the tokens unchanged. Writes `tokenadapt.safetensors` (config in its
 * metadata), `metrics.json` and `log.jsonl` to the output folder.
 *
 * Config keys: `tokenizer` (folder with tokenizer.json + tokenizer.safetensors), `images`,
 * `testImages`, `limit` (train on the first N images, 0 = all), `evalImages`, `seed`,
 * `model.*` (width, heads, headDim, mlpDim, depth; grids, K and d come from the tokenizer),
 * `train.*` (steps, batchSize, lr, warmupSteps, minLr, geometric.*), `eval.*` (the
 * augmentation A of the evaluation, same keys as train.geometric).
 * `--train.steps=0 --init <file>` only evaluates saved weights.
 *
 * @module
 */
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { writeFileAtomic } from "@lib/io";
import {
  evaluateTokenAdapt,
  type PairTokenizer,
  resolveGeometricAugConfig,
  resolveTokenAdaptTrainConfig,
  TokenAdapt,
  tokenAdaptSmall,
  trainTokenAdapt,
} from "@lib/adapters";
import { Rng } from "@lib/random";
import { CodeQuantizer } from "@lib/tokens";
import { gridSize, loadImages, loadTokenizer, takeImages } from "@lib/tokenizer";
import { applyOverrides, mergeConfig, parseTaskArgs, Progress, readConfigFile } from "@lib/train";
import { callerTaskArgs } from "./_paths.ts";

const FASHION = "/usr/share/datasets/fashion-mnist";

const USAGE = "usage: deno task tokenadapt:train [--config <json>] [--out <dir>] " +
  "[--backend wasm|cpu|webgpu|auto] [--init <weights.safetensors>] [--tokenizer=DIR] " +
  "[--limit=N] [--evalImages=N] [--seed=N] [--model.<key>=V] [--train.<key>=V] [--eval.<key>=V]";

function defaults() {
  return {
    tokenizer: "data/fmnist8",
    images: `${FASHION}/train-images-idx3-ubyte.gz`,
    testImages: `${FASHION}/t10k-images-idx3-ubyte.gz`,
    limit: 0,
    evalImages: 1000,
    seed: 0,
    model: { width: 128, heads: 4, headDim: 32, mlpDim: 512, depth: 1 },
    train: {
      steps: 1500,
      batchSize: 64,
      lr: 1e-3,
      warmupSteps: 100,
      minLr: 1e-5,
      geometric: resolveGeometricAugConfig({ groupSize: 8, cropScale: [0.2, 1] }),
    },
    eval: resolveGeometricAugConfig({ groupSize: 8, cropScale: [0.2, 1] }),
  };
}

const SCHEMA = {
  integers: [
    "limit",
    "evalImages",
    "seed",
    "model.width",
    "model.heads",
    "model.headDim",
    "model.mlpDim",
    "model.depth",
    "train.steps",
    "train.batchSize",
    "train.warmupSteps",
  ],
};

function fail(message: string, status: number): never {
  console.error(`tokenadapt:train: ${message}`);
  Deno.exit(status);
}

async function main(args: string[]): Promise<void> {
  let cfg = defaults();
  let outDir: string, backend: string, init: string | undefined;
  try {
    const a = callerTaskArgs(parseTaskArgs(args));
    if (a.help) {
      console.log(USAGE);
      return;
    }
    if (a.config !== undefined) {
      cfg = mergeConfig(cfg, await readConfigFile(a.config), SCHEMA, a.config);
    }
    cfg = applyOverrides(cfg, a.overrides, SCHEMA);
    cfg.eval = resolveGeometricAugConfig(cfg.eval);
    resolveTokenAdaptTrainConfig(cfg.train); // validate before reading data
    outDir = a.out ?? `runs/tokenadapt-${Date.now()}`;
    backend = a.backend ?? "wasm";
    init = a.init;
  } catch (e) {
    if (e instanceof SyntaxError || e instanceof TypeError || e instanceof RangeError) {
      fail(`${e.message}\n${USAGE}`, 2);
    }
    throw e;
  }
  const info = await initBackend({ backend: backend as BackendRequest });
  console.error(describeBackend(info));
  let tok;
  try {
    tok = await loadTokenizer(cfg.tokenizer);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      fail(
        `${(e as Error).message}\nTraining TokenAdapt needs the whole tokenizer (encoder too): ` +
          "pass --tokenizer=<a folder with tokenizer.json and tokenizer.safetensors>, e.g. the " +
          "run folder of `deno task tokenizer:train`",
        1,
      );
    }
    throw e;
  }
  const quantizer = CodeQuantizer.from(tok.codebook);
  const n = gridSize(tok.config);
  const pair: PairTokenizer = {
    frameSize: tok.config.imageSize,
    imageSize: tok.config.inputSize,
    channels: tok.config.channels,
    gridSize: n,
    encode: (x) => tok.encode(x),
  };
  const modelConfig = { ...tokenAdaptSmall(n, quantizer.size, quantizer.dim), ...cfg.model };
  const rng = new Rng(cfg.seed);
  let model: TokenAdapt;
  if (init !== undefined) {
    model = (await TokenAdapt.load(init, modelConfig)).model;
    console.error(`initial weights: ${init}`);
  } else {
    model = TokenAdapt.create(modelConfig, rng.fork("init"));
  }
  // the output folder is made when there is something to write (no empty folder after an error)
  const makeOut = () => Deno.mkdir(outDir, { recursive: true });
  try {
    const loaded = await loadImages(cfg.images);
    const images = cfg.limit > 0 ? takeImages(loaded.images, cfg.limit) : loaded.images;
    console.error(
      `TokenAdapt ${n}x${n} -> ${2 * n}x${
        2 * n
      } -> ${n}x${n}, K=${quantizer.size}, d=${quantizer.dim}, ` +
        `${model.parameterCount()} parameters; ${images.shape[0]} training images; out ${outDir}`,
    );
    const train = resolveTokenAdaptTrainConfig(cfg.train);
    const log: string[] = [];
    const t0 = performance.now();
    if (train.steps > 0) {
      const progress = new Progress({ label: "tokenadapt", total: train.steps });
      trainTokenAdapt(model, images, pair, quantizer, train, rng.fork("train"), {
        onStep: (s) => {
          log.push(JSON.stringify(s));
          progress.update(s.step + 1, { loss: s.loss, acc: s.accuracy.toFixed(3), lr: s.lr });
        },
      });
      progress.finish();
      await makeOut();
      await writeFileAtomic(`${outDir}/log.jsonl`, new TextEncoder().encode(log.join("\n") + "\n"));
    }
    const trainSeconds = (performance.now() - t0) / 1000;
    const test = await loadImages(cfg.testImages);
    const held = takeImages(test.images, Math.min(cfg.evalImages, test.images.shape[0]));
    console.error(`evaluating on ${held.shape[0]} held-out images from ${cfg.testImages}...`);
    const agreement = evaluateTokenAdapt(model, held, pair, quantizer, cfg.eval, rng.fork("eval"), {
      decode: (c) => tok.decode(c),
    });
    const last = log.slice(-50).map((l) => JSON.parse(l) as { loss: number; accuracy: number });
    const metrics = {
      command: `deno task tokenadapt:train ${args.join(" ")}`.trim(),
      backend: info.name,
      tokenizer: cfg.tokenizer,
      trainImages: images.shape[0],
      evalImages: held.shape[0],
      evalSource: cfg.testImages,
      model: model.config,
      parameters: model.parameterCount(),
      train,
      eval: cfg.eval,
      seed: cfg.seed,
      trainSeconds: Math.round(trainSeconds),
      finalTrainLoss: last.length ? last.reduce((s, r) => s + r.loss, 0) / last.length : null,
      finalTrainAccuracy: last.length
        ? last.reduce((s, r) => s + r.accuracy, 0) / last.length
        : null,
      agreement,
    };
    await makeOut();
    await model.save(`${outDir}/tokenadapt.safetensors`, {
      trained_with: JSON.stringify({ tokenizer: cfg.tokenizer, train, seed: cfg.seed }),
    });
    await writeFileAtomic(
      `${outDir}/metrics.json`,
      new TextEncoder().encode(JSON.stringify(metrics, null, 2) + "\n"),
    );
    console.log(
      `agreement with T(A(x)) on ${held.shape[0]} held-out images: TokenAdapt ${
        (100 * agreement.tokenAdapt).toFixed(2)
      }%, naive ${(100 * agreement.naive).toFixed(2)}%, unchanged ${
        (100 * agreement.unchanged).toFixed(2)
      }%`,
    );
    if (agreement.psnr !== undefined) {
      const p = agreement.psnr;
      console.log(
        `PSNR of the decoded codes against A(x): TokenAdapt ${p.tokenAdapt.toFixed(2)} dB, naive ${
          p.naive.toFixed(2)
        } dB, unchanged ${p.unchanged.toFixed(2)} dB, T(A(x)) itself ${p.tokenizer.toFixed(2)} dB`,
      );
    }
    console.log(`saved ${outDir}/tokenadapt.safetensors and ${outDir}/metrics.json`);
  } finally {
    model.dispose();
    quantizer.dispose();
    tok.dispose();
  }
}

if (import.meta.main) await main(Deno.args);
