/**
 * Data-parallel training on several CPU cores. tfjs-wasm runs one thread under Deno
 * (its pthread pool does not start), so a step uses one core; a {@linkcode DataParallel}
 * pool splits each micro-batch into W contiguous shards: shard 0 runs in the main
 * thread on the main model, shards 1..W-1 in Deno Workers that each hold their own
 * tfjs backend and a replica of the model.
 *
 * Per micro-batch the main thread sends every worker one message (the parameters when
 * an optimizer step changed them, plus the shard's codes, masking plan or targets, loss
 * weight and dropout generator state, all as transferred buffers) and gets one back
 * (the shard's weighted loss and its gradients packed in one transferred buffer). The
 * gradients are summed in shard order; the main thread applies the optimizer.
 *
 * Numerics: shard s of `Bs` samples computes `Bs / B * loss_s`, so the sum is the mean
 * over the batch (MTM: every sample has the same number of masked patches; classifier:
 * the batch-mean soft-target CE), also for an uneven last shard: the step equals the
 * single-process step up to float summation order. Randomness: the caller draws the
 * masking plan (and any augmentation) for the whole batch, so they do not depend on W;
 * dropout and drop path draw from `rng.fork("samples lo-hi")` per shard, so their masks
 * do depend on the shard boundaries (on W), as they would with any other batch split.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type MaskPlan, MtmModel, type TokenClassifier } from "../../models/mod.ts";
import { Rng } from "../../random/mod.ts";
import {
  entryInfo,
  type FromWorker,
  type GradsMessage,
  packParams,
  type ReplicableModel,
  replicaSpec,
  shardBounds,
  type ShardData,
  shardLoss,
  slicePlan,
  type ToWorker,
} from "./_parallel_shard.ts";
import type { MicroBatch, MicroBatchGradients } from "./loop.ts";

/** Options of {@linkcode DataParallel.start}. */
export interface DataParallelOptions {
  /**
   * Shards computed at once: the main thread plus `workers - 1` Deno Workers. 1 starts
   * no worker (everything runs in the main thread).
   */
  workers: number;
}

/** One micro-batch as host arrays, made ready by the caller (crop, augmentation, masking). */
export interface HostMicroBatch {
  /** `[B, m, m]` row-major int32 model input codes (read, not kept). */
  codes: Int32Array;
  /** B. */
  batch: number;
  /** MTM: the batch's masking plan (e.g. `model.randomMasking(B, rng)`). */
  plan?: MaskPlan;
  /** Classifier: `[B, C]` row-major float32 targets (soft or smoothed one-hot). */
  targets?: Float32Array;
}

/** Options of {@linkcode DataParallel.gradients}. */
export interface ParallelStepOptions {
  /** Loss scale of the gradients (`1 / accumIter`). @default {1} */
  scale?: number;
  /**
   * The micro-batch's dropout generator: shard `[lo, hi)` draws from
   * `rng.fork("samples lo-hi")` (`rng` itself is not advanced).
   */
  rng: Rng;
  /**
   * Completed optimizer steps: the parameters are sent to the workers when it differs
   * from the previous call's (and on the first call).
   */
  step: number;
}

let live = 0;

/**
 * Data-parallel worker threads alive in this process (all pools together).
 * @returns the number of started, not yet terminated workers
 */
export function liveWorkers(): number {
  return live;
}

const BUILTIN_ERRORS: Record<string, new (message: string) => Error> = {
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** The same error class (built-in ones) or at least the same name (named classes). */
function reviveError(name: string, message: string, stack: string, where: string): Error {
  const Ctor = BUILTIN_ERRORS[name] ?? Error;
  const e = new Ctor(message);
  if (e.name !== name) e.name = name;
  e.stack = `${stack || `${name}: ${message}`}\n    at ${where}`;
  return e;
}

/** A message to a worker before it gets its id. */
type Request = ToWorker extends infer T ? T extends ToWorker ? Omit<T, "id"> : never : never;

interface Pending {
  resolve: (m: FromWorker) => void;
  reject: (e: Error) => void;
}

class WorkerHandle {
  readonly index: number;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #terminated = false;
  #dead: Error | null = null;

  constructor(index: number) {
    this.index = index;
    this.#worker = new Worker(new URL("./_parallel_worker.ts", import.meta.url).href, {
      type: "module",
    });
    live++;
    this.#worker.onmessage = (e: MessageEvent<FromWorker>) => this.#onMessage(e.data);
    this.#worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#fail(new Error(`Data-parallel worker ${index} crashed: ${e.message}`));
    };
    this.#worker.onmessageerror = () => {
      this.#fail(new Error(`Data-parallel worker ${index} sent a message that cannot be read`));
    };
  }

  #onMessage(m: FromWorker): void {
    const p = this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id);
    if (m.type === "error") {
      p.reject(reviveError(m.name, m.message, m.stack, `data-parallel worker ${this.index}`));
    } else {
      p.resolve(m);
    }
  }

  #fail(e: Error): void {
    this.#dead ??= e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /** Send one message; the promise settles with the answer of the same id. */
  request(msg: Request, transfer: Transferable[] = []): Promise<FromWorker> {
    if (this.#dead !== null) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    const p = new Promise<FromWorker>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
    });
    p.catch(() => {}); // observed by the caller; never an unhandled rejection
    this.#worker.postMessage({ ...msg, id } as ToWorker, transfer);
    return p;
  }

  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#worker.terminate();
    live--;
    this.#fail(new Error(`Data-parallel worker ${this.index} was shut down`));
  }
}

function shardTransfer(params: Float32Array | null, s: ShardData): Transferable[] {
  const arrays: ArrayBufferView[] = [s.codes];
  if (params !== null) arrays.push(params);
  if (s.targets !== null) arrays.push(s.targets);
  if (s.plan !== null) arrays.push(s.plan.noise, s.plan.masked, s.plan.dropped, s.plan.kept);
  // every array here is a fresh copy with its own (non-shared) buffer
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

/**
 * A pool of data-parallel workers around a main model (see the module doc).
 *
 * @example
 * ```ts ignore
 * const pool = await DataParallel.start(model, { workers: 2 });
 * try {
 *   const plan = model.randomMasking(B, rngs.model);
 *   const { loss, grads } = await pool.gradients({ codes, batch: B, plan }, { rng, step });
 *   optimizer.step(grads, lr);
 *   tf.dispose([...grads.values()]);
 * } finally {
 *   await pool.close();
 * }
 * ```
 */
export class DataParallel {
  readonly #model: ReplicableModel;
  readonly #handles: WorkerHandle[];
  #syncedStep: number | null = null;
  #closed = false;

  private constructor(model: ReplicableModel, handles: WorkerHandle[]) {
    this.#model = model;
    this.#handles = handles;
  }

  /**
   * Start `workers - 1` workers, each with the main thread's backend and a replica of
   * the model, and wait until they are ready.
   *
   * @param model the main model (an `MtmModel` or a `TokenClassifier`); its parameters
   *   are sent to the workers at the first step
   * @param options the number of shards
   * @returns the ready pool (close it with {@linkcode DataParallel.close})
   * @throws {RangeError} for a worker count below 1, or above 1 on a backend other than
   *   cpu / wasm
   * @throws {TypeError} for another kind of model, or a replica that does not match
   */
  static async start(
    model: MtmModel | TokenClassifier,
    options: DataParallelOptions,
  ): Promise<DataParallel> {
    const w = options.workers;
    if (!Number.isInteger(w) || w < 1) {
      throw new RangeError(
        `Cannot train with ${w} data-parallel workers: expected an integer >= 1`,
      );
    }
    const replica = replicaSpec(model);
    const backend = tf.getBackend();
    if (w > 1 && backend !== "wasm" && backend !== "cpu") {
      throw new RangeError(
        `Cannot train with ${w} data-parallel workers on the ${backend} backend: ` +
          `workers run the cpu or wasm backend (use --workers=1 on a GPU)`,
      );
    }
    const handles: WorkerHandle[] = [];
    try {
      const entries = entryInfo(model);
      for (let i = 1; i < w; i++) handles.push(new WorkerHandle(i));
      const ready = await Promise.allSettled(
        handles.map((h) => h.request({ type: "init", backend, replica, entries })),
      );
      const failed = ready.find((r) => r.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    } catch (e) {
      for (const h of handles) h.terminate();
      throw e;
    }
    return new DataParallel(model, handles);
  }

  /** Shards per micro-batch (the main thread included). */
  get workers(): number {
    return this.#handles.length + 1;
  }

  /**
   * Loss and gradients of one micro-batch, computed by all shards at once.
   *
   * @param b the micro-batch as host arrays (MTM: with its plan; classifier: with targets)
   * @param options loss scale, dropout generator, step (parameter broadcast)
   * @returns the unscaled mean loss and the summed gradients of `scale * loss` by
   *   reference name (tensors owned by the caller)
   * @throws {TypeError} for arrays of the wrong size or a missing plan / targets
   * @throws {RangeError} for a batch smaller than the number of shards
   * @throws whatever a shard throws, with the same class (the first by shard order;
   *   every shard has finished when it is thrown)
   */
  async gradients(b: HostMicroBatch, options: ParallelStepOptions): Promise<MicroBatchGradients> {
    if (this.#closed) throw new TypeError("Cannot compute gradients: the pool is closed");
    const model = this.#model;
    const W = this.workers, B = b.batch;
    const m = model.config.gridSide, mm = m * m;
    if (!Number.isInteger(B) || B < W) {
      throw new RangeError(`Cannot split a batch of ${B} across ${W} data-parallel workers`);
    }
    if (b.codes.length !== B * mm) {
      throw new TypeError(`Cannot use ${b.codes.length} codes for a batch of ${B} x ${m} x ${m}`);
    }
    const isMtm = model instanceof MtmModel;
    let C = 0;
    if (isMtm) {
      if (b.plan === undefined || b.plan.batch !== B) {
        throw new TypeError(`Cannot train an MTM model without a masking plan for ${B} samples`);
      }
    } else {
      C = (model as TokenClassifier).config.numClasses;
      if (b.targets === undefined || b.targets.length !== B * C) {
        throw new TypeError(
          `Cannot train a classifier without [${B}, ${C}] targets (got ${b.targets?.length} values)`,
        );
      }
    }
    const scale = options.scale ?? 1;
    const shards: ShardData[] = shardBounds(B, W).map(([lo, hi]) => ({
      codes: b.codes.slice(lo * mm, hi * mm),
      batch: hi - lo,
      plan: isMtm ? slicePlan(b.plan!, lo, hi) : null,
      targets: isMtm ? null : b.targets!.slice(lo * C, hi * C),
      weight: (hi - lo) / B * scale,
      rng: options.rng.fork(`samples ${lo}-${hi}`).getState(),
    }));
    let params: Float32Array | null = null;
    if (this.#handles.length > 0 && this.#syncedStep !== options.step) {
      params = packParams(model);
    }
    this.#syncedStep = null; // until every shard has answered
    const last = this.#handles.length - 1;
    const replies = Promise.allSettled(this.#handles.map((h, i) => {
      const p = params === null ? null : i === last ? params : params.slice();
      const shard = shards[i + 1];
      return h.request({ type: "step", params: p, shard }, shardTransfer(p, shard));
    }));
    let main: { value: tf.Scalar; grads: Map<string, tf.Tensor> } | null = null;
    let mainError: unknown = null;
    try {
      main = model.params.valueAndGrads(() => shardLoss(model, shards[0]));
    } catch (e) {
      mainError = e;
    }
    const results = await replies;
    const failed = results.find((r) => r.status === "rejected") as
      | PromiseRejectedResult
      | undefined;
    if (mainError !== null || failed !== undefined) {
      if (main !== null) tf.dispose([main.value, ...main.grads.values()]);
      throw mainError ?? failed!.reason;
    }
    const { value, grads } = main!;
    let loss = (value.dataSync() as Float32Array)[0];
    value.dispose();
    const trainable = model.params.entries().filter((e) => e.trainable);
    for (const r of results) {
      const g = (r as PromiseFulfilledResult<FromWorker>).value as GradsMessage;
      loss += g.loss;
      let o = 0;
      trainable.forEach((e, i) => {
        if (!g.present[i]) return;
        const size = e.variable.size;
        const values = g.grads.subarray(o, o + size);
        o += size;
        const prev = grads.get(e.name);
        const t = tf.tensor(values, e.variable.shape, "float32");
        if (prev === undefined) {
          grads.set(e.name, t);
        } else {
          grads.set(e.name, tf.add(prev, t));
          prev.dispose();
          t.dispose();
        }
      });
    }
    this.#syncedStep = options.step;
    return { loss: loss / scale, grads };
  }

  /**
   * `tf.memory().numTensors` in every worker (leak checks).
   * @returns one count per worker, in shard order
   */
  async workerTensors(): Promise<number[]> {
    const answers = await Promise.all(this.#handles.map((h) => h.request({ type: "memory" })));
    return answers.map((a) => (a as { numTensors: number }).numTensors);
  }

  /**
   * Shut every worker down (each disposes its replica, then is terminated; a worker
   * that does not answer within `timeoutMs` is terminated anyway). Idempotent; the
   * main model is not disposed.
   * @param timeoutMs how long to wait for a clean shutdown
   */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#handles.map(async (h) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          h.request({ type: "close" }),
          new Promise((resolve) => {
            timer = setTimeout(resolve, timeoutMs);
          }),
        ]);
      } catch {
        // a crashed worker: terminated below
      } finally {
        clearTimeout(timer);
        h.terminate();
      }
    }));
  }
}

/**
 * The dropout generator of a micro-batch in a data-parallel run: a function of the run's
 * seed and the micro-batch's position only, so that a resumed run draws the same masks.
 * @param seed the run's seed
 * @param batch the micro-batch (its `step` and `iter` identify it)
 * @returns a generator for {@linkcode ParallelStepOptions.rng}
 */
export function microBatchRng(seed: number, batch: Pick<MicroBatch, "step" | "iter">): Rng {
  return new Rng(seed).fork("data-parallel dropout").fork(`step ${batch.step} iter ${batch.iter}`);
}

/**
 * Read a codes tensor into a fresh host array and dispose it.
 * @param codes `[B, m, m]` int32 (disposed)
 * @returns a copy of its values (never a backend's own buffer)
 */
export async function takeHostCodes(codes: tf.Tensor): Promise<Int32Array> {
  try {
    return Int32Array.from(await codes.data() as Int32Array);
  } finally {
    codes.dispose();
  }
}
