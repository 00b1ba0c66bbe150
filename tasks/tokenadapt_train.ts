/**
 * `deno task tokenadapt:train [--config <json>] [--out <dir>] [--resume <dir>] [--backend wasm]
 *  [--init <weights.safetensors>] [--curve <dir>] [--key=value ...]`
 *
 * Trains a small TokenAdapt on this project's tokenizer (pairs of tokens of an image and of
 * its geometrically augmented version, see `@lib/adapters` tokenadapt_train), then measures
 * on held-out test images how often its codes agree with the tokens of the augmented image,
 * against the naive alternative (augment the token embedding map itself, re-quantize) and
 * against leaving the tokens unchanged. Writes `tokenadapt.safetensors` (config in its
 * metadata), `metrics.json`, `log.jsonl` and the curve `curve.svg` / `curve.png` to the
 * output folder.
 *
 * The augmentation A it trains on is, by default, the one the TokenAdapt is used with: the
 * TokenAdapt half's settings of the pre-training and fine-tuning runs of `usedWith` (a grid
 * config, `configs/grid_fmnist.json`; its `seitpp` arm, read through the same path as
 * `deno task recipe`), taken in turn step by step. `--usedWith=reference` trains on
 * `train.geometric` instead (default: the reference's geometry with crop area [0.2, 1], the
 * setting of the first committed TokenAdapt).
 *
 * While training: every `evalEvery` steps, the held-out loss and agreement on the last
 * `holdout` training images (not trained on) under each A it is used with and under the
 * identity transform, as `{"step", "heldOut"}` records in `log.jsonl`; every
 * `checkpointEvery` steps (and at SIGINT / SIGTERM) a checkpoint (`checkpoint.json` + weights
 * and Adam moments) from which `--resume <dir>` continues exactly. `--curve <dir>` only
 * redraws a run's curve from its `log.jsonl` (also while it trains).
 *
 * Config keys: `tokenizer` (folder with tokenizer.json + tokenizer.safetensors), `images`,
 * `testImages`, `limit` (train on the first N images, 0 = all), `holdout`, `evalImages`,
 * `evalEvery`, `checkpointEvery`, `seed`, `usedWith`,
 * `model.*` (width, heads, headDim, mlpDim, depth; grids, K and d come from the tokenizer),
 * `train.*` (steps, batchSize, lr, warmupSteps, minLr, geometric.*), `eval.*` (the
 * augmentation A of the final test evaluation, same keys as train.geometric).
 * `--train.steps=0 --init <file>` only evaluates saved weights.
 *
 * @module
 */
import { join } from "node:path";
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { type HostTensor, writeFileAtomic } from "@lib/io";
import {
  evaluateTokenAdapt,
  type GeometricAugConfig,
  type PairTokenizer,
  type ResolvedGeometricAugConfig,
  resolveGeometricAugConfig,
  resolveTokenAdaptTrainConfig,
  TokenAdapt,
  type TokenAdaptAgreement,
  tokenAdaptSmall,
  TokenAdaptTrainer,
} from "@lib/adapters";
import { Rng } from "@lib/random";
import { FigureExporter, readTokenAdaptCurve, tokenAdaptCurveFigure } from "@lib/report";
import { CodeQuantizer } from "@lib/tokens";
import { gridSize, loadImages, loadTokenizer, takeImages } from "@lib/tokenizer";
import {
  applyOverrides,
  checkResumeConfig,
  identityGeometry,
  letSignalsIn,
  listenForStop,
  loadCheckpoint,
  mergeConfig,
  parseTaskArgs,
  plannedBudgets,
  Progress,
  readConfigFile,
  resolveGridConfig,
  saveCheckpoint,
  tokenAdaptUses,
} from "@lib/train";
import { callerPath, callerTaskArgs } from "./_paths.ts";

const FASHION = "/usr/share/datasets/fashion-mnist";

const USAGE = "usage: deno task tokenadapt:train [--config <json>] [--out <dir>] " +
  "[--resume <dir> [--force]] [--curve <dir>] " +
  "[--backend wasm|cpu|webgpu|auto] [--init <weights.safetensors>] [--tokenizer=DIR] " +
  "[--usedWith=<grid.json>|reference] [--limit=N] [--holdout=N] [--evalImages=N] " +
  "[--evalEvery=N] [--checkpointEvery=N] [--seed=N] [--model.<key>=V] [--train.<key>=V] " +
  "[--eval.<key>=V]";

/** The augmentation the first committed TokenAdapt trained on (and the final test A). */
export const REFERENCE_GEOMETRY: ResolvedGeometricAugConfig = resolveGeometricAugConfig({
  groupSize: 8,
  cropScale: [0.2, 1],
});

/** Samples sharing a flip / affine draw while training (the steps draw one per half-batch). */
export const TRAIN_GROUP_SIZE = 8;

/** The task's default config. */
export function tokenAdaptTrainDefaults() {
  return {
    tokenizer: "data/fmnist8",
    images: `${FASHION}/train-images-idx3-ubyte.gz`,
    testImages: `${FASHION}/t10k-images-idx3-ubyte.gz`,
    limit: 0,
    holdout: 1000,
    evalImages: 1000,
    evalEvery: 250,
    checkpointEvery: 100,
    seed: 0,
    usedWith: "configs/grid_fmnist.json",
    model: { width: 128, heads: 4, headDim: 32, mlpDim: 512, depth: 1 },
    train: {
      steps: 1500,
      batchSize: 64,
      lr: 1e-3,
      warmupSteps: 100,
      minLr: 1e-5,
      geometric: REFERENCE_GEOMETRY as GeometricAugConfig | GeometricAugConfig[],
    },
    eval: REFERENCE_GEOMETRY,
  };
}

/** The task's resolved config. */
export type TokenAdaptTaskConfig = ReturnType<typeof tokenAdaptTrainDefaults> & {
  /** Names of the training mixture's entries (`pretrain`, `finetune` or `reference`). */
  uses: { phase: string; run: string | null }[];
};

const SCHEMA = {
  integers: [
    "limit",
    "holdout",
    "evalImages",
    "evalEvery",
    "checkpointEvery",
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

/** Keys a resumed run may change: they only touch evaluation, checkpoints and the final test. */
const RESUME_FREE = ["evalEvery", "checkpointEvery", "evalImages", "testImages", "eval"];

/**
 * The training mixture of a config: the TokenAdapt half's geometry in each phase of the
 * `usedWith` grid (group size {@linkcode TRAIN_GROUP_SIZE}), or `train.geometric` for
 * `usedWith: "reference"`.
 * @param cfg the merged config
 * @returns the config with `train.geometric` the mixture and `uses` naming its entries
 * @throws {TypeError} when `train.geometric` is set together with a `usedWith` grid
 */
export async function resolveTrainGeometry(
  cfg: ReturnType<typeof tokenAdaptTrainDefaults>,
): Promise<TokenAdaptTaskConfig> {
  if (cfg.usedWith === "reference") {
    const list = Array.isArray(cfg.train.geometric) ? cfg.train.geometric : [cfg.train.geometric];
    return {
      ...cfg,
      train: { ...cfg.train, geometric: list.map((g) => resolveGeometricAugConfig(g)) },
      uses: list.map(() => ({ phase: "reference", run: null })),
    };
  }
  if (JSON.stringify(cfg.train.geometric) !== JSON.stringify(REFERENCE_GEOMETRY)) {
    throw new TypeError(
      `train.geometric is taken from usedWith "${cfg.usedWith}" (the TokenAdapt half of its ` +
        `runs); pass --usedWith=reference to train on train.geometric`,
    );
  }
  const path = callerPath(cfg.usedWith);
  const g = resolveGridConfig(await readConfigFile(path), path);
  const uses = tokenAdaptUses(g, await plannedBudgets(g, join("results", g.name, "data")));
  return {
    ...cfg,
    train: {
      ...cfg.train,
      geometric: uses.map((u) => ({ ...u.geometric, groupSize: TRAIN_GROUP_SIZE })),
    },
    uses: uses.map((u) => ({ phase: u.phase, run: u.run })),
  };
}

function fail(message: string, status: number): never {
  console.error(`tokenadapt:train: ${message}`);
  Deno.exit(status);
}

/** The step records of a log up to (not including) a step, and the eval records up to it. */
function logUpTo(text: string, step: number): string[] {
  return text.split("\n").filter((l) => l.trim() !== "").filter((l) => {
    const r = JSON.parse(l) as { step: number; heldOut?: unknown };
    return r.heldOut !== undefined ? r.step <= step : r.step < step;
  });
}

async function writeCurve(dir: string): Promise<string[]> {
  const text = await Deno.readTextFile(join(dir, "log.jsonl"));
  const fig = tokenAdaptCurveFigure(
    readTokenAdaptCurve(text),
    "TokenAdapt training: loss and held-out agreement with T(A(x))",
  );
  const ex = await FigureExporter.start();
  const files = [join(dir, "curve.svg"), join(dir, "curve.png")];
  try {
    await ex.write(fig, files[0]);
    await ex.write(fig, files[1], { scale: 2 });
  } finally {
    await ex.close();
  }
  return files;
}

function summary(a: TokenAdaptAgreement) {
  return { tokenAdapt: a.tokenAdapt, naive: a.naive, unchanged: a.unchanged, loss: a.loss };
}

async function main(args: string[]): Promise<number> {
  let cfg: TokenAdaptTaskConfig;
  let outDir: string, backend: string, init: string | undefined, resumeDir: string | undefined;
  let resume: Awaited<ReturnType<typeof loadCheckpoint>> | null = null;
  try {
    const curveAt = args.findIndex((a) => a === "--curve" || a.startsWith("--curve="));
    if (curveAt >= 0) {
      const v = args[curveAt].includes("=") ? args[curveAt].split("=", 2)[1] : args[curveAt + 1];
      if (v === undefined || v === "") throw new SyntaxError("--curve needs a run folder");
      for (const f of await writeCurve(callerPath(v))) console.log(`wrote ${f}`);
      return 0;
    }
    const raw = parseTaskArgs(args);
    const a = callerTaskArgs(raw);
    if (a.help) {
      console.log(USAGE);
      return 0;
    }
    resumeDir = a.resume;
    if (resumeDir !== undefined) {
      if (a.config !== undefined || a.init !== undefined) {
        throw new TypeError(
          "Cannot combine --config or --init with --resume: a resumed run keeps its own",
        );
      }
      resume = await loadCheckpoint(resumeDir);
      const stored = resume.state.config as TokenAdaptTaskConfig;
      const { uses, ...base } = stored;
      const requested = applyOverrides(base, a.overrides, SCHEMA);
      const free = Object.fromEntries(
        RESUME_FREE.map((k) => [k, requested[k as keyof typeof base]]),
      );
      const changes = checkResumeConfig(resumeDir, { ...base, ...free }, requested, {
        step: resume.state.step,
        force: a.force,
      });
      for (const [k, from, to] of changes.forced) {
        console.error(
          `tokenadapt:train: --force: ${k} ${JSON.stringify(from)} -> ${
            JSON.stringify(to)
          } from step ${resume.state.step} (not an exact resume)`,
        );
      }
      cfg = { ...requested, uses } as TokenAdaptTaskConfig;
      outDir = resumeDir;
    } else {
      let merged = tokenAdaptTrainDefaults();
      if (a.config !== undefined) {
        merged = mergeConfig(merged, await readConfigFile(a.config), SCHEMA, a.config);
      }
      merged = applyOverrides(merged, a.overrides, SCHEMA);
      cfg = await resolveTrainGeometry(merged);
      outDir = a.out ?? `runs/tokenadapt-${Date.now()}`;
    }
    cfg.eval = resolveGeometricAugConfig(cfg.eval);
    resolveTokenAdaptTrainConfig(cfg.train); // validate before reading data
    for (const k of ["evalEvery", "checkpointEvery"] as const) {
      if (!(cfg[k] >= 1)) throw new RangeError(`${k} ${cfg[k]}: expected an integer >= 1`);
    }
    backend = a.backend ?? "wasm";
    init = a.init;
  } catch (e) {
    if (e instanceof SyntaxError || e instanceof TypeError || e instanceof RangeError) {
      fail(`${e.message}\n${USAGE}`, 2);
    }
    if (e instanceof Error && e.name === "ResumeConflictError") fail(e.message, 2);
    throw e;
  }
  const info = await initBackend({ backend: backend as BackendRequest });
  console.error(describeBackend(info));
  let tok: Awaited<ReturnType<typeof loadTokenizer>>;
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
  if (resume !== null) {
    model = TokenAdapt.create(modelConfig, rng.fork("init"));
    model.loadStateDict(resume.model, { source: join(resume.dir, resume.state.weights) });
  } else if (init !== undefined) {
    model = (await TokenAdapt.load(init, modelConfig)).model;
    console.error(`initial weights: ${init}`);
  } else {
    model = TokenAdapt.create(modelConfig, rng.fork("init"));
  }
  // the output folder is made when there is something to write (no empty folder after an error)
  const makeOut = () => Deno.mkdir(outDir, { recursive: true });
  const signals = listenForStop({ label: "tokenadapt:train" });
  let trainer: TokenAdaptTrainer | null = null;
  try {
    const loaded = await loadImages(cfg.images);
    const all = cfg.limit > 0 ? takeImages(loaded.images, cfg.limit) : loaded.images;
    const N = all.shape[0];
    const hold = Math.min(cfg.holdout, Math.floor(N / 2));
    const images = takeImages(all, N - hold);
    const heldImages = hold > 0 ? lastImages(all, hold) : null;
    console.error(
      `TokenAdapt ${n}x${n} -> ${2 * n}x${
        2 * n
      } -> ${n}x${n}, K=${quantizer.size}, d=${quantizer.dim}, ` +
        `${model.parameterCount()} parameters; ${images.shape[0]} training images, ${hold} ` +
        `held out; A: ${cfg.uses.map((u) => u.phase).join(" / ")}; out ${outDir}`,
    );
    const train = resolveTokenAdaptTrainConfig(cfg.train);
    // held-out evaluation: each A it is used with, and the identity transform (f -> g)
    const heldAs: [string, ResolvedGeometricAugConfig][] = [
      ...train.geometric.map((g, i) =>
        [cfg.uses[i].phase, g] as [string, ResolvedGeometricAugConfig]
      ),
      ["identity", identityGeometry(train.geometric[0])],
    ];
    const evalHeld = (step: number) => {
      const heldOut: Record<string, ReturnType<typeof summary>> = {};
      for (const [name, g] of heldAs) {
        const r = evaluateTokenAdapt(
          model,
          heldImages!,
          pair,
          quantizer,
          g,
          new Rng(cfg.seed).fork("heldout"),
        );
        heldOut[name] = summary(r);
      }
      return { step, heldOut };
    };
    const finish = async (trainSeconds: number): Promise<number> => {
      const test = await loadImages(cfg.testImages);
      const held = takeImages(test.images, Math.min(cfg.evalImages, test.images.shape[0]));
      console.error(`evaluating on ${held.shape[0]} held-out images from ${cfg.testImages}...`);
      const agreement = evaluateTokenAdapt(
        model,
        held,
        pair,
        quantizer,
        cfg.eval,
        rng.fork("eval"),
        {
          decode: (c) => tok.decode(c),
        },
      );
      const byUse: Record<string, ReturnType<typeof summary>> = {};
      for (const [name, g] of heldAs) {
        byUse[name] = summary(
          evaluateTokenAdapt(model, held, pair, quantizer, g, new Rng(cfg.seed).fork("test")),
        );
      }
      const logText = await Deno.readTextFile(join(outDir, "log.jsonl")).catch(() => "");
      const steps = logText.split("\n").filter((l) => l.trim() !== "").map((l) =>
        JSON.parse(l) as { loss?: number; accuracy?: number; heldOut?: unknown }
      ).filter((r) => r.heldOut === undefined);
      const last = steps.slice(-50) as { loss: number; accuracy: number }[];
      const metrics = {
        command: `deno task tokenadapt:train ${args.join(" ")}`.trim(),
        backend: info.name,
        tokenizer: cfg.tokenizer,
        trainImages: images.shape[0],
        heldOutImages: hold,
        evalImages: held.shape[0],
        evalSource: cfg.testImages,
        usedWith: cfg.usedWith,
        uses: cfg.uses,
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
        agreementByUse: byUse,
      };
      await makeOut();
      await model.save(join(outDir, "tokenadapt.safetensors"), {
        trained_with: JSON.stringify({
          tokenizer: cfg.tokenizer,
          usedWith: cfg.usedWith,
          train,
          seed: cfg.seed,
        }),
      });
      await writeFileAtomic(
        join(outDir, "metrics.json"),
        new TextEncoder().encode(JSON.stringify(metrics, null, 2) + "\n"),
      );
      console.log(
        `agreement with T(A(x)) on ${held.shape[0]} held-out images: TokenAdapt ${
          (100 * agreement.tokenAdapt).toFixed(2)
        }%, naive ${(100 * agreement.naive).toFixed(2)}%, unchanged ${
          (100 * agreement.unchanged).toFixed(2)
        }%`,
      );
      for (const [k, v] of Object.entries(byUse)) {
        console.log(
          `  A = ${k}: TokenAdapt ${(100 * v.tokenAdapt).toFixed(2)}%, naive ${
            (100 * v.naive).toFixed(2)
          }%, loss ${v.loss.toFixed(3)}`,
        );
      }
      if (agreement.psnr !== undefined) {
        const p = agreement.psnr;
        console.log(
          `PSNR of the decoded codes against A(x): TokenAdapt ${
            p.tokenAdapt.toFixed(2)
          } dB, naive ${p.naive.toFixed(2)} dB, unchanged ${
            p.unchanged.toFixed(2)
          } dB, T(A(x)) itself ${p.tokenizer.toFixed(2)} dB`,
        );
      }
      if (logText.includes("heldOut")) {
        try {
          await writeCurve(outDir);
        } catch (e) {
          console.error(`curve not drawn (${(e as Error).message}); run --curve ${outDir} later`);
        }
      }
      console.log(`saved ${outDir}/tokenadapt.safetensors and ${outDir}/metrics.json`);
      return 0;
    };
    const t0 = performance.now();
    let pending: string[] = [];
    let stopped = false;
    if (train.steps > 0) {
      await makeOut();
      const logPath = join(outDir, "log.jsonl");
      let previousSeconds = 0;
      trainer = new TokenAdaptTrainer(model, images, pair, quantizer, train, rng.fork("train"));
      if (resume !== null) {
        trainer.restore({
          step: resume.state.step,
          rng: resume.state.rng.train,
          adamSteps: resume.state.extra.adamSteps as number,
          moments: resume.optimizer as Map<string, HostTensor>,
        });
        previousSeconds = (resume.state.extra.trainSeconds as number) ?? 0;
        const kept = logUpTo(await Deno.readTextFile(logPath).catch(() => ""), trainer.step);
        await writeFileAtomic(
          logPath,
          new TextEncoder().encode(kept.map((l) => l + "\n").join("")),
        );
        console.error(`resumed ${outDir} at step ${trainer.step} of ${train.steps}`);
      } else {
        await writeFileAtomic(logPath, new Uint8Array());
        await writeFileAtomic(
          join(outDir, "config.json"),
          new TextEncoder().encode(JSON.stringify(cfg, null, 2) + "\n"),
        );
      }
      const flush = async () => {
        if (pending.length === 0) return;
        const f = await Deno.open(logPath, { append: true, create: true });
        try {
          await f.write(new TextEncoder().encode(pending.map((l) => l + "\n").join("")));
        } finally {
          f.close();
        }
        pending = [];
      };
      const checkpoint = async () => {
        await flush();
        const s = trainer!.state();
        await saveCheckpoint(outDir, model.stateDict(), s.moments, {
          step: s.step,
          epoch: 0,
          iter: 0,
          config: cfg,
          rng: { train: s.rng },
          optimizer: null,
          lr: s.step > 0 ? 0 : train.lr,
          extra: {
            adamSteps: s.adamSteps,
            trainSeconds: previousSeconds + (performance.now() - t0) / 1000,
          },
        });
      };
      const progress = new Progress({ label: "tokenadapt", total: train.steps });
      if (heldImages !== null && trainer.step === 0) pending.push(JSON.stringify(evalHeld(0)));
      while (!trainer.done) {
        const s = trainer.next();
        pending.push(JSON.stringify(s));
        progress.update(s.step + 1, { loss: s.loss, acc: s.accuracy.toFixed(3), lr: s.lr });
        const done = trainer.step;
        if (heldImages !== null && (done % cfg.evalEvery === 0 || trainer.done)) {
          const e = evalHeld(done);
          pending.push(JSON.stringify(e));
          const parts = Object.entries(e.heldOut).map(([k, v]) =>
            `${k} ${(100 * v.tokenAdapt).toFixed(1)}% (loss ${v.loss.toFixed(3)})`
          );
          console.error(`held-out at step ${done}: ${parts.join(", ")}`);
        }
        await letSignalsIn();
        if (signals.stop()) {
          await checkpoint();
          stopped = true;
          break;
        }
        if (done % cfg.checkpointEvery === 0 || trainer.done) await checkpoint();
      }
      progress.finish();
      if (stopped) {
        console.error(
          `stopped at step ${trainer.step} of ${train.steps}: checkpoint saved; continue with ` +
            `deno task tokenadapt:train --resume ${outDir}`,
        );
        return signals.exitCode;
      }
      await flush();
      previousSeconds += (performance.now() - t0) / 1000;
      const trainSeconds = previousSeconds;
      return await finish(trainSeconds);
    }
    return await finish(0);
  } finally {
    signals.dispose();
    trainer?.dispose();
    model.dispose();
    quantizer.dispose();
    tok.dispose();
  }
}

/** The last `count` images of a set (the held-out split). */
function lastImages(images: HostTensor, count: number): HostTensor {
  const N = images.shape[0];
  const per = images.data.length / N;
  return {
    dtype: images.dtype,
    shape: [count, ...images.shape.slice(1)],
    data: images.data.slice((N - count) * per),
  } as HostTensor;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
