/**
 * `deno task tokenizer:train [--config configs/tokenizer_fmnist8.json] [--out <run dir>]
 *  [--resume <run dir>] [--backend wasm] [--key=value ...]`
 *
 * Trains a VQ tokenizer on an image set (Fashion-MNIST's training idx file from Debian's
 * `dataset-fashion-mnist` by default; any idx file or folder of PNGs via `--images=PATH`),
 * with a progress line and ETA, checkpoints in the run folder (resume with
 * `--resume <run dir>`), then prunes the codebook to the codes used on the training
 * images, measures reconstruction PSNR on the test images (`--testImages=PATH`, `""` to
 * skip), and saves `tokenizer.json`, `tokenizer.safetensors`, `decoder.safetensors` and
 * `metrics.json` in the run folder.
 *
 * Config keys (file or `--key=value`): `images`, `testImages`, `limit` (train on the first
 * N images, 0 = all), `tokenizer.*` (see TokenizerConfig), `train.*` (see
 * TokenizerTrainConfig).
 *
 * @module
 */
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { exists, removeFailedStart } from "./_run_folder.ts";
import { writeFileAtomic } from "@lib/io";
import {
  applyOverrides,
  listenForStop,
  mergeConfig,
  parseTaskArgs,
  Progress,
  readConfigFile,
  RunStoppedError,
} from "@lib/train";
import {
  encodeImages,
  imageSetDims,
  loadImages,
  pruneCodebook,
  reconstructionMetrics,
  resolveTokenizerConfig,
  resolveTokenizerTrainConfig,
  saveDecoder,
  saveTokenizer,
  takeImages,
  trainTokenizer,
} from "@lib/tokenizer";
import { callerTaskArgs } from "./_paths.ts";

const FASHION = "/usr/share/datasets/fashion-mnist";

const USAGE = "usage: deno task tokenizer:train [--config <json>] [--out <run dir>] " +
  "[--resume <run dir>] [--backend wasm|cpu|webgpu|auto] [--images=PATH] [--testImages=PATH] " +
  "[--limit=N] [--tokenizer.<key>=V] [--train.<key>=V]";

/** Defaults; the architecture's per-level lists depend on the downsampling factor. */
function defaults(downsample: number) {
  return {
    images: `${FASHION}/train-images-idx3-ubyte.gz`,
    testImages: `${FASHION}/t10k-images-idx3-ubyte.gz`,
    limit: 0,
    tokenizer: resolveTokenizerConfig({ downsample }),
    train: resolveTokenizerTrainConfig({}),
  };
}

/** The downsampling factor asked for: the last override, else the config file's, else 4. */
function requestedDownsample(file: unknown, overrides: [string, string][]): number {
  const o = overrides.filter(([k]) => k === "tokenizer.downsample").at(-1);
  if (o !== undefined) return Number(o[1]);
  const f = (file as { tokenizer?: { downsample?: unknown } } | undefined)?.tokenizer?.downsample;
  return typeof f === "number" ? f : 4;
}

function fail(message: string, status: number): never {
  console.error(`tokenizer:train: ${message}`);
  Deno.exit(status);
}

async function main(args: string[]): Promise<void> {
  let cfg: ReturnType<typeof defaults>;
  let runDir: string;
  let backend: string;
  let resume = false;
  try {
    const a = callerTaskArgs(parseTaskArgs(args));
    if (a.help) {
      console.log(USAGE);
      return;
    }
    const file = a.config === undefined ? undefined : await readConfigFile(a.config);
    cfg = defaults(
      resolveTokenizerConfig({
        downsample: requestedDownsample(file, a.overrides),
      }).downsample,
    );
    if (a.config !== undefined) {
      cfg = mergeConfig(cfg, file, { integers: ["limit"] }, a.config);
    }
    cfg = applyOverrides(cfg, a.overrides, { integers: ["limit"] });
    // validate now, before any data is read
    cfg.tokenizer = resolveTokenizerConfig(cfg.tokenizer);
    cfg.train = resolveTokenizerTrainConfig(cfg.train);
    if (a.resume !== undefined && a.out !== undefined && a.resume !== a.out) {
      throw new SyntaxError("--resume and --out name different run folders");
    }
    resume = a.resume !== undefined;
    runDir = a.resume ?? a.out ??
      `runs/tokenizer-${cfg.tokenizer.imageSize / cfg.tokenizer.downsample}x-${Date.now()}`;
    backend = a.backend ?? "wasm";
  } catch (e) {
    if (e instanceof SyntaxError || e instanceof TypeError || e instanceof RangeError) {
      fail(`${e.message}\n${USAGE}`, 2);
    }
    throw e;
  }
  const info = await initBackend({ backend: backend as BackendRequest });
  console.error(describeBackend(info));
  const load = (path: string) =>
    loadImages(path).catch((e) => {
      if (e instanceof Deno.errors.NotFound || e instanceof SyntaxError || e instanceof TypeError) {
        fail(e.message, 1);
      }
      throw e;
    });
  const loaded = await load(cfg.images);
  // the test images are read (and checked against the architecture) before hours of training
  const test = cfg.testImages === "" ? null : await load(cfg.testImages);
  const { channels: C, inputSize: S } = cfg.tokenizer;
  for (const set of test === null ? [loaded] : [loaded, test]) {
    const [, c, h, w] = imageSetDims(set.images, set.source);
    if (c !== C || h !== S || w !== S) {
      fail(
        `"${set.source}" holds ${c}x${h}x${w} (CxHxW) images, the tokenizer is configured for ` +
          `${C}x${S}x${S} (set --tokenizer.channels / --tokenizer.inputSize, or --testImages=)`,
        1,
      );
    }
  }
  const images = cfg.limit > 0 ? takeImages(loaded.images, cfg.limit) : loaded.images;
  console.error(
    `images: ${images.shape[0]} of ${loaded.images.shape[0]} from ${cfg.images} [${
      images.shape.slice(1)
    }]; run folder ${runDir}`,
  );
  if (resume && await finishedTokenizerRun(runDir, cfg.train.steps)) return;
  const runDirExisted = await exists(runDir);
  const progress = new Progress({ label: "tokenizer", total: cfg.train.steps });
  const signals = listenForStop({ label: "tokenizer", print: (l) => progress.log(l) });
  const result = await trainTokenizer(images, {
    stop: signals.stop,
    config: cfg.tokenizer,
    train: cfg.train,
    runDir,
    resume,
    source: cfg.images,
    log: (line) => progress.log(line),
    onStep: (s) => {
      progress.update(s.step, {
        epoch: s.epoch.toFixed(2),
        loss: s.loss,
        psnr: s.psnr.toFixed(2),
        codes: s.codesUsed,
        lr: s.lr,
      });
      if (s.restarted > 0) progress.log(`step ${s.step}: restarted ${s.restarted} dead codes`);
    },
  }).catch(async (e) => {
    progress.finish();
    // a run that failed before its first checkpoint leaves no folder it made
    await removeFailedStart(runDir, runDirExisted);
    if (e instanceof RunStoppedError) {
      console.error(`stopped: ${e.message} (--resume ${e.runDir})`);
      Deno.exit(signals.exitCode || 130);
    }
    throw e;
  });
  progress.finish();
  signals.dispose();
  const trainSeconds = result.trainSeconds;
  const tok = result.tokenizer;
  try {
    console.error(`pruning the codebook on ${images.shape[0]} training images...`);
    const prune = pruneCodebook(tok, images, { source: cfg.images });
    console.error(`codebook: ${prune.before} -> ${prune.after} codes in use`);
    const metrics: Record<string, unknown> = {
      trainImages: images.shape[0],
      steps: result.train.steps,
      trainSeconds: Math.round(trainSeconds),
      resumedFrom: result.startStep,
      codebookBefore: prune.before,
      codebookAfter: prune.after,
      lastSteps: result.history.slice(-5),
    };
    if (test !== null) {
      const codes = encodeImages(tok, test.images, { source: cfg.testImages });
      const m = reconstructionMetrics(tok.decoder, codes, test.images, { source: cfg.testImages });
      metrics.test = { source: cfg.testImages, ...m };
      console.error(
        `test reconstruction on ${m.count} images: PSNR ${m.psnr.toFixed(2)} dB ` +
          `(mean per image ${m.meanImagePsnr.toFixed(2)} dB), MSE ${m.mse.toFixed(5)}`,
      );
    }
    const infoJson = {
      train: result.train,
      images: cfg.images,
      limit: cfg.limit,
      backend: info.name,
      metrics,
    };
    await saveTokenizer(runDir, tok, infoJson);
    await saveDecoder(runDir, tok.decoder, infoJson);
    await writeFileAtomic(
      `${runDir}/metrics.json`,
      new TextEncoder().encode(JSON.stringify(metrics, null, 2) + "\n"),
    );
    console.log(`saved the tokenizer to ${runDir}`);
  } finally {
    tok.dispose();
  }
}

/**
 * Whether a resumed run is already done: its checkpoint is at the last step and its
 * metrics are written. Says so; the run folder is left as it is.
 */
async function finishedTokenizerRun(runDir: string, steps: number): Promise<boolean> {
  let step: number;
  try {
    step = JSON.parse(await Deno.readTextFile(`${runDir}/checkpoint.json`)).step;
    await Deno.stat(`${runDir}/metrics.json`);
  } catch {
    return false; // trainTokenizer reports a missing or damaged checkpoint
  }
  if (!(step >= steps)) return false;
  console.error(
    `tokenizer:train: run "${runDir}" is already finished (step ${step} of ${steps}); ` +
      "nothing to do, nothing changed",
  );
  console.log(`saved the tokenizer to ${runDir}`);
  return true;
}

if (import.meta.main) await main(Deno.args);
