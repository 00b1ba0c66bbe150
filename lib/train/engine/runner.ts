/**
 * A training run around {@linkcode trainLoop}: optimizer from parameter groups, run
 * folder with config and JSONL log, progress line, periodic and final checkpoints,
 * exact resume, evaluation at epoch ends, and the final `model.safetensors` /
 * `metrics.json`. Pre-training and fine-tuning (./recipes.ts) are both runs.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, writeSafetensorsFile } from "../../io/mod.ts";
import { Rng, type RngState } from "../../random/mod.ts";
import { AdamW } from "./adamw.ts";
import { type LoadedCheckpoint, MODEL_FILE, saveCheckpoint } from "./checkpoint.ts";
import { NonFiniteLossError, RunStoppedError } from "./errors.ts";
import {
  epochPlan,
  type GradientsFn,
  type LoopPosition,
  type MicroBatch,
  type PreparedBatch,
  type StepInfo,
  type TokenSource,
  type TrainableParams,
  trainLoop,
} from "./loop.ts";
import type { ParamGrouping } from "./param_groups.ts";
import { Progress } from "./progress.ts";
import { RunLog } from "./run_log.ts";
import { letSignalsIn } from "./stop_signal.ts";

/** Parameters with state-dict export/import (`ParamStore` from `@lib/models`). */
export interface RunParams extends TrainableParams {
  /** @returns every parameter in the reference layout, by reference name */
  stateDict(): Map<string, HostTensor>;
  /**
   * The same with asynchronous reads (GPU backends); used when present.
   * @returns every parameter in the reference layout, by reference name
   */
  readStateDict?(): Promise<Map<string, HostTensor>>;
  /**
   * @param sd tensors by reference name
   * @param options `strict: true` throws on any missing/unexpected/mismatched name
   */
  loadStateDict(sd: Map<string, HostTensor>, options: { strict?: boolean }): unknown;
}

/** The schedule-and-optimizer part of a run's config (shared by both recipes). */
export interface RunOptimConfig {
  /** Seed of everything random in the run. */
  seed: number;
  /** Micro-batch size. */
  batchSize: number;
  /** Micro-batches per optimizer step. */
  accumIter: number;
  /** Epochs of the schedule. */
  epochs: number;
  /** Stop after this many optimizer steps (a budget); `null` for none. */
  maxSteps: number | null;
  /** Clip gradients to this global norm; `null` for none. */
  gradClip: number | null;
  /** AdamW betas. */
  betas: [number, number];
  /** AdamW eps. */
  eps: number;
  /** Log a `step` record every this many steps (and the last of each epoch). */
  logEvery: number;
  /** Save a checkpoint every this many steps (0: only at epoch ends and at the end). */
  checkpointEvery: number;
  /** Evaluate every this many epochs (0: only at the end). */
  evalEvery: number;
  /** Checkpoint weights files to keep. */
  keepCheckpoints: number;
  /**
   * Data-parallel shards: the main thread plus `workers - 1` Deno Workers (./parallel.ts;
   * cpu / wasm). Absent (configs of older runs) means 1.
   */
  workers?: number;
}

/** Everything a run needs; the recipes build it. */
export interface RunSetup {
  /** `pretrain` or `finetune` (the label of logs and progress). */
  kind: string;
  /** The resolved config (plain JSON), saved with the run and every checkpoint. */
  config: RunOptimConfig & Record<string, unknown>;
  /** The model's parameters. */
  params: RunParams;
  /** Training records. */
  data: TokenSource;
  /** Use only the first N records; `null` for all. */
  limit: number | null;
  /** Which parameters are optimized, with lr scales and weight decays. */
  groups: ParamGrouping;
  /** The lr at a fractional epoch. */
  lrAt: (epochFloat: number) => number;
  /** Named generators used by `prepare` (states saved in checkpoints). */
  rngs: Record<string, Rng>;
  /** Make a micro-batch ready and give its loss closure. */
  prepare: (batch: MicroBatch) => PreparedBatch;
  /** Evaluate (e.g. top-1/top-5 on the test split); results are logged. */
  evaluate?: () => Promise<Record<string, number>>;
  /** The run folder (created by the caller, e.g. with `createRunDir`). */
  runDir: string;
  /** A checkpoint to resume from (of this run folder). */
  resume?: LoadedCheckpoint | null;
  /** Extra fields for the `start` record (data files, init report...). */
  startInfo?: Record<string, unknown>;
  /** Progress output; `false` for none. @default {a Progress on stderr} */
  progress?: boolean;
  /** Called with each line of human-readable output. @default {console.error via Progress} */
  print?: (line: string) => void;
  /**
   * Asked after every optimizer step (after its log record and any periodic checkpoint):
   * returning true saves a checkpoint at that position, logs a `stopped` record and throws
   * {@linkcode RunStoppedError}, so a headless run can be interrupted (SIGINT) and resumed
   * exactly. @default {never stop}
   */
  stop?: () => boolean;
  /**
   * Computes each micro-batch's loss and gradients instead of `prepare` (data-parallel
   * training, see `TrainLoopOptions.gradients`). @default {none}
   */
  gradients?: GradientsFn;
}

/** What {@linkcode runTraining} returns (also written to `metrics.json`). */
export interface RunSummary {
  /** The run folder. */
  runDir: string;
  /** `pretrain` / `finetune`. */
  kind: string;
  /** Why it stopped: the schedule's last epoch or the step budget. */
  stopped: "epochs" | "maxSteps";
  /** Completed optimizer steps in total. */
  steps: number;
  /** Where it stopped. */
  position: LoopPosition;
  /** Loss of the last step. */
  lastLoss: number;
  /** Mean loss over the last up-to-50 steps of this process. */
  recentLoss: number;
  /** Wall time of the steps, seconds: every segment of a resumed run (as its checkpoints record). */
  trainSeconds: number;
  /** Training samples per second over those steps. */
  samplesPerSecond: number;
  /** The last evaluation, if any. */
  eval: Record<string, number> | null;
  /** The backend that ran. */
  backend: string;
}

async function readState(params: RunParams): Promise<Map<string, HostTensor>> {
  return params.readStateDict ? await params.readStateDict() : params.stateDict();
}

function rngStates(rngs: Record<string, Rng>): Record<string, RngState> {
  return Object.fromEntries(Object.entries(rngs).map(([k, r]) => [k, r.getState()]));
}

function entryVariables(params: TrainableParams): Map<string, tf.Variable> {
  return new Map(params.entries().map((e) => [e.name, e.variable]));
}

/**
 * Run (or resume) training: see the module doc.
 *
 * @param s the setup
 * @returns the summary
 * @throws {NonFiniteLossError} when the loss becomes NaN/Inf (logged as an `error`
 *   record; the last checkpoint on disk stays the last good one)
 * @throws {TypeError} when a resumed checkpoint does not fit the model or optimizer
 */
export async function runTraining(s: RunSetup): Promise<RunSummary> {
  const c = s.config;
  const records = s.limit == null ? s.data.length : Math.min(s.limit, s.data.length);
  const plan = epochPlan(records, c.batchSize, c.accumIter);
  const vars = entryVariables(s.params);
  const optimizer = new AdamW(
    s.groups.settings.map((g) => ({
      name: g.name,
      variable: vars.get(g.name)!,
      lrScale: g.lrScale,
      weightDecay: g.weightDecay,
    })),
    { betas: c.betas, eps: c.eps },
  );
  const print = s.print ?? ((l: string) => console.error(l));
  let log: RunLog;
  let start: LoopPosition = { step: 0, epoch: 0, iter: 0 };
  let lastEval: Record<string, number> | null = null;
  // time and samples of the segments before a resume (their checkpoints carry them)
  let priorSeconds = 0, priorSamples = 0, priorLoss = NaN;
  const totalSteps = Math.min(c.maxSteps ?? Infinity, c.epochs * plan.stepsPerEpoch);
  try {
    if (s.resume) {
      const ck = s.resume;
      s.params.loadStateDict(ck.model, { strict: true });
      if (ck.state.optimizer === null) {
        throw new TypeError(
          `Cannot resume from "${ck.dir}": its checkpoint holds no optimizer state`,
        );
      }
      optimizer.loadState(ck.state.optimizer, ck.optimizer, ck.dir);
      for (const [k, r] of Object.entries(s.rngs)) {
        const st = ck.state.rng[k];
        if (st === undefined) {
          throw new TypeError(`Cannot resume from "${ck.dir}": no state for the "${k}" generator`);
        }
        r.setState(st);
      }
      start = { step: ck.state.step, epoch: ck.state.epoch, iter: ck.state.iter };
      lastEval = (ck.state.extra?.lastEval as Record<string, number> | undefined) ?? null;
      priorSeconds = Number(ck.state.extra?.trainSeconds ?? 0) || 0;
      priorSamples = Number(ck.state.extra?.samples ?? 0) || 0;
      priorLoss = typeof ck.state.extra?.lastLoss === "number" ? ck.state.extra.lastLoss : NaN;
      log = await RunLog.resume(s.runDir, { from: start, config: c });
      print(`${s.kind}: resuming ${s.runDir} at step ${start.step} (epoch ${start.epoch})`);
    } else {
      log = await RunLog.create(s.runDir, {
        config: c,
        seed: c.seed,
        kind: s.kind,
        records,
        plan: { ...plan, totalSteps },
        optimized: s.groups.settings.length,
        frozen: s.groups.frozen,
        ...s.startInfo,
      });
    }
  } catch (e) {
    optimizer.dispose();
    throw e;
  }

  const progress = s.progress === false ? null : new Progress({
    label: s.kind,
    total: totalSteps,
    start: start.step,
  });
  const say = (line: string) => progress ? progress.log(line) : print(line);
  let lastLr = 0;
  const save = async (pos: LoopPosition) => {
    await saveCheckpoint(
      s.runDir,
      await readState(s.params),
      await optimizer.stateTensors(),
      {
        step: pos.step,
        epoch: pos.epoch,
        iter: pos.iter,
        config: c,
        rng: rngStates(s.rngs),
        optimizer: optimizer.stateJson(),
        lr: lastLr,
        extra: {
          kind: s.kind,
          lastEval,
          trainSeconds: priorSeconds + trainSeconds,
          samples: priorSamples + samples,
          lastLoss: recent.length ? recent[recent.length - 1] : priorLoss,
        },
      },
      { keep: c.keepCheckpoints },
    );
    await log.write({ type: "checkpoint", step: pos.step, epoch: pos.epoch, iter: pos.iter });
  };
  const runEval = async (epoch: number, step: number) => {
    if (!s.evaluate) return;
    lastEval = await s.evaluate();
    await log.write({ type: "eval", epoch, step, ...lastEval });
    say(
      `${s.kind} eval after epoch ${epoch}: ` +
        Object.entries(lastEval).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
          .join(", "),
    );
  };

  const stopHere = async (pos: LoopPosition) => {
    await save(pos);
    await log.write({ type: "stopped", step: pos.step, epoch: pos.epoch, iter: pos.iter });
    throw new RunStoppedError(pos.step, s.runDir);
  };
  const recent: number[] = [];
  let trainSeconds = 0, samples = 0, epochLossSum = 0, epochSteps = 0, epochSeconds = 0;
  const t0 = performance.now();
  let result;
  try {
    result = await trainLoop({
      params: s.params,
      optimizer,
      data: s.data,
      seed: c.seed,
      batchSize: c.batchSize,
      accumIter: c.accumIter,
      epochs: c.epochs,
      limit: s.limit,
      lrAt: s.lrAt,
      prepare: s.prepare,
      gradients: s.gradients,
      gradClip: c.gradClip,
      maxSteps: c.maxSteps,
      start,
      onStep: async (info: StepInfo, next: LoopPosition) => {
        lastLr = info.lr;
        trainSeconds += info.seconds;
        samples += info.samples;
        epochLossSum += info.loss;
        epochSteps++;
        epochSeconds += info.seconds;
        recent.push(info.loss);
        if (recent.length > 50) recent.shift();
        const endOfEpoch = next.epoch !== info.epoch;
        if (info.step % c.logEvery === 0 || endOfEpoch || info.step === totalSteps) {
          await log.write({
            type: "step",
            step: info.step,
            epoch: info.epoch,
            epoch_float: info.epochFloat,
            lr: info.lr,
            loss: info.loss,
            grad_norm: info.gradNorm,
            step_s: info.seconds,
            samples_per_s: info.samples / info.seconds,
            elapsed_s: (performance.now() - t0) / 1000,
          });
        }
        progress?.update(info.step, {
          epoch: info.epochFloat.toFixed(2),
          loss: info.loss,
          lr: info.lr,
        });
        if (c.checkpointEvery > 0 && info.step % c.checkpointEvery === 0 && !endOfEpoch) {
          await save(next);
        }
        // a signal's listener runs only when the event loop turns
        if (s.stop !== undefined) await letSignalsIn();
        if (!endOfEpoch && next.step < totalSteps && s.stop?.()) await stopHere(next);
      },
      onEpochEnd: async (epoch: number, next: LoopPosition) => {
        await log.write({
          type: "epoch",
          epoch,
          step: next.step,
          loss: epochSteps > 0 ? epochLossSum / epochSteps : null,
          seconds: epochSeconds,
          samples_per_s: epochSeconds > 0
            ? epochSteps * c.batchSize * c.accumIter / epochSeconds
            : null,
        });
        epochLossSum = 0;
        epochSteps = 0;
        epochSeconds = 0;
        const last = next.epoch >= c.epochs || (c.maxSteps != null && next.step >= c.maxSteps);
        if (!last && c.evalEvery > 0 && (epoch + 1) % c.evalEvery === 0) {
          await runEval(epoch, next.step);
        }
        await save(next);
        if (!last && s.stop?.()) await stopHere(next);
      },
    });
  } catch (e) {
    progress?.finish();
    if (e instanceof NonFiniteLossError) {
      await log.write({
        type: "error",
        error: e.name,
        message: e.message,
        step: e.step,
        epoch: e.epoch,
      });
    }
    optimizer.dispose();
    throw e;
  }
  progress?.finish();
  const pos = result.position;
  if (result.steps > 0 || !s.resume) {
    await runEval(Math.max(0, pos.iter === 0 ? pos.epoch - 1 : pos.epoch), pos.step);
    await save(pos);
  }
  const stateDict = await readState(s.params);
  await writeSafetensorsFile(`${s.runDir}/${MODEL_FILE}`, stateDict, {
    kind: s.kind,
    step: String(pos.step),
  });
  optimizer.dispose();
  const summary: RunSummary = {
    runDir: s.runDir,
    kind: s.kind,
    stopped: result.stopped,
    steps: pos.step,
    position: pos,
    // a resume with no step left keeps the last segment's loss (its checkpoint has it)
    lastLoss: result.steps > 0 ? result.lastLoss : priorLoss,
    recentLoss: recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : priorLoss,
    trainSeconds: priorSeconds + trainSeconds,
    samplesPerSecond: priorSeconds + trainSeconds > 0
      ? (priorSamples + samples) / (priorSeconds + trainSeconds)
      : 0,
    eval: lastEval,
    backend: tf.getBackend(),
  };
  await log.write({ type: "end", ...summary });
  await log.writeMetrics({ ...summary });
  return summary;
}

/** The generators of a run, forked by name from its seed. */
export function runRngs(seed: number, names: readonly string[]): Record<string, Rng> {
  const root = new Rng(seed);
  return Object.fromEntries(names.map((n) => [n, root.fork(n)]));
}
