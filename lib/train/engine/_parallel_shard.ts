/**
 * What the main thread and the data-parallel workers (./parallel.ts,
 * ./_parallel_worker.ts) share: the message shapes, how a batch is cut into shards, the
 * loss of one shard, and packing parameters/gradients into one transferable buffer.
 * Private to lib/train.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { activeWasm, heapView } from "./_wasm_heap.ts";
import {
  type MaskPlan,
  MtmModel,
  type ResolvedClassifierConfig,
  type ResolvedMtmConfig,
  TokenClassifier,
} from "../../models/mod.ts";
import { Rng, type RngState } from "../../random/mod.ts";
import { classifierObjective, mtmObjective } from "../recipes/objectives.ts";

/** The model a replica is: its class and its resolved config. */
export type ReplicaSpec =
  | { kind: "mtm"; config: ResolvedMtmConfig }
  | { kind: "classifier"; config: ResolvedClassifierConfig };

/** A model that can be replicated in a worker. */
export type ReplicableModel = MtmModel | TokenClassifier;

/** One parameter as the handshake describes it. */
export interface EntryInfo {
  name: string;
  /** Internal (variable) shape. */
  shape: number[];
  trainable: boolean;
}

/** One shard of a micro-batch, as host arrays. */
export interface ShardData {
  /** `[Bs * m * m]` int32 codes. */
  codes: Int32Array;
  /** Bs. */
  batch: number;
  /** MTM: the shard's rows of the batch's masking plan. */
  plan: MaskPlan | null;
  /** Classifier: `[Bs * C]` float32 targets. */
  targets: Float32Array | null;
  /** The loss weight: `Bs / B * scale`. */
  weight: number;
  /** State of the shard's dropout / drop-path generator. */
  rng: RngState;
}

/** Messages to a worker (each answered by a message with the same id). */
export type ToWorker =
  | { type: "init"; id: number; backend: string; replica: ReplicaSpec; entries: EntryInfo[] }
  | { type: "step"; id: number; params: Float32Array | null; shard: ShardData }
  | { type: "memory"; id: number }
  | { type: "close"; id: number };

/** The answer to a `step` message. */
export interface GradsMessage {
  type: "grads";
  id: number;
  /** The weighted shard loss. */
  loss: number;
  /** Trainable gradients packed in entry order (absent ones skipped). */
  grads: Float32Array;
  /** 1 where the trainable entry has a gradient. */
  present: Uint8Array;
  /** `tf.memory().numTensors` in the worker after the step. */
  numTensors: number;
}

/** Messages from a worker. */
export type FromWorker =
  | { type: "ready"; id: number; numTensors: number }
  | GradsMessage
  | { type: "memory"; id: number; numTensors: number }
  | { type: "closed"; id: number }
  | { type: "error"; id: number; name: string; message: string; stack: string };

/**
 * The replica spec of a model.
 * @param model an `MtmModel` or a `TokenClassifier`
 * @returns its kind and resolved config
 * @throws {TypeError} for any other model
 */
export function replicaSpec(model: unknown): ReplicaSpec {
  if (model instanceof MtmModel) return { kind: "mtm", config: model.config };
  if (model instanceof TokenClassifier) return { kind: "classifier", config: model.config };
  throw new TypeError(
    "Cannot train with data-parallel workers: the model is neither an MtmModel nor a " +
      "TokenClassifier from @lib/models (workers rebuild it from its config)",
  );
}

/**
 * Build a replica (its initial values are overwritten by the first broadcast).
 * @param spec kind and config
 * @returns the model
 */
export function buildReplica(spec: ReplicaSpec): ReplicableModel {
  return spec.kind === "mtm"
    ? new MtmModel(spec.config, new Rng(0))
    : new TokenClassifier(spec.config, new Rng(0));
}

/**
 * The handshake description of a model's parameters.
 * @param model the model
 * @returns names, internal shapes, trainable flags, in entry order
 */
export function entryInfo(model: ReplicableModel): EntryInfo[] {
  return model.params.entries().map((e) => ({
    name: e.name,
    shape: [...e.variable.shape],
    trainable: e.trainable,
  }));
}

/**
 * Shard boundaries: `workers` contiguous ranges of sizes as equal as possible, the
 * larger ones first.
 * @param batch B
 * @param workers W (<= B)
 * @returns `[lo, hi)` per shard
 */
export function shardBounds(batch: number, workers: number): [number, number][] {
  const out: [number, number][] = [];
  const base = Math.floor(batch / workers), extra = batch % workers;
  let lo = 0;
  for (let i = 0; i < workers; i++) {
    const hi = lo + base + (i < extra ? 1 : 0);
    out.push([lo, hi]);
    lo = hi;
  }
  return out;
}

/**
 * The rows `[lo, hi)` of a masking plan.
 * @param plan the batch's plan
 * @param lo first sample
 * @param hi end sample
 * @returns the shard's plan (copies)
 */
export function slicePlan(plan: MaskPlan, lo: number, hi: number): MaskPlan {
  const l = plan.numPatches, kept = l - plan.numDropped;
  return {
    batch: hi - lo,
    numPatches: l,
    maskRatio: plan.maskRatio,
    numMasked: plan.numMasked,
    numDropped: plan.numDropped,
    noise: plan.noise.slice(lo * l, hi * l),
    masked: plan.masked.slice(lo * l, hi * l),
    dropped: plan.dropped.slice(lo * l, hi * l),
    kept: plan.kept.slice(lo * kept, hi * kept),
  };
}

/**
 * The weighted loss of one shard, in training mode (call inside `valueAndGrads`).
 * @param model the replica (or the main model)
 * @param s the shard
 * @returns `weight * loss` as a scalar owned by the caller
 * @throws {TypeError} when the shard lacks the plan (MTM) or targets (classifier)
 */
export function shardLoss(model: ReplicableModel, s: ShardData): tf.Scalar {
  const m = model.config.gridSide;
  const rng = new Rng(s.rng);
  return tf.tidy(() => {
    const codes = tf.tensor3d(s.codes, [s.batch, m, m], "int32");
    let loss: tf.Scalar;
    if (model instanceof MtmModel) {
      if (s.plan === null) throw new TypeError("Cannot compute an MTM shard loss without a plan");
      loss = mtmObjective(model, codes, s.plan, rng);
    } else {
      if (s.targets === null) {
        throw new TypeError("Cannot compute a classifier shard loss without targets");
      }
      const t = tf.tensor2d(s.targets, [s.batch, model.config.numClasses]);
      loss = classifierObjective(model, codes, t, rng);
    }
    return tf.mul(loss, s.weight) as tf.Scalar;
  });
}

/**
 * Read every parameter into one buffer (synchronous reads: cpu, wasm).
 * @param model the model
 * @returns the values in entry order
 */
export function packParams(model: ReplicableModel): Float32Array {
  const entries = model.params.entries();
  let n = 0;
  for (const e of entries) n += e.variable.size;
  const out = new Float32Array(n);
  const b = activeWasm();
  let o = 0;
  for (const e of entries) {
    // On wasm straight from the heap (dataSync would copy first).
    out.set((b === null ? null : heapView(b, e.variable)) ?? e.variable.dataSync(), o);
    o += e.variable.size;
  }
  return out;
}

/**
 * Assign every parameter from a buffer made by {@linkcode packParams}.
 * @param model the replica
 * @param flat the values in entry order
 * @throws {TypeError} when the length does not match
 */
export function unpackParams(model: ReplicableModel, flat: Float32Array): void {
  const entries = model.params.entries();
  let n = 0;
  for (const e of entries) n += e.variable.size;
  if (flat.length !== n) {
    throw new TypeError(`Cannot apply ${flat.length} parameter values: the replica has ${n}`);
  }
  let o = 0;
  for (const e of entries) {
    // A new buffer (new tensor id), not a write in place: tfjs-wasm's XNNPACK kernels cache
    // weights packed per tensor id.
    const t = tf.tensor(flat.subarray(o, o + e.variable.size), e.variable.shape, "float32");
    e.variable.assign(t);
    t.dispose();
    o += e.variable.size;
  }
}

/**
 * Pack trainable gradients (disposing them) into one buffer.
 * @param model the model (gives the entry order and sizes)
 * @param grads gradients by name; every tensor is disposed
 * @returns the packed values and which trainable entries were present
 */
export function packGrads(
  model: ReplicableModel,
  grads: Map<string, tf.Tensor>,
): { data: Float32Array; present: Uint8Array } {
  const trainable = model.params.entries().filter((e) => e.trainable);
  const present = new Uint8Array(trainable.length);
  let n = 0;
  trainable.forEach((e, i) => {
    if (grads.has(e.name)) {
      present[i] = 1;
      n += e.variable.size;
    }
  });
  const data = new Float32Array(n);
  const b = activeWasm();
  let o = 0;
  try {
    trainable.forEach((e, i) => {
      if (!present[i]) return;
      const g = grads.get(e.name)!;
      data.set((b === null ? null : heapView(b, g)) ?? g.dataSync() as Float32Array, o);
      o += e.variable.size;
    });
  } finally {
    for (const g of grads.values()) g.dispose();
  }
  return { data, present };
}
