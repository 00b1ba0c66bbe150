/**
 * Training checkpoints: a safetensors file (model state dict under the reference
 * names + optimizer moments under `optimizer.exp_avg(_sq).<name>`) and a JSON file
 * (step, epoch, position in the epoch, resolved config, Rng states, optimizer step
 * counts, the weights file's SHA-256).
 *
 * Layout in a run folder:
 * ```
 * checkpoint.json                  the commit point: names the weights file below
 * checkpoint-00000120.safetensors  weights + moments of step 120
 * ```
 * A save writes the new weights file under a new name (atomically), then replaces
 * `checkpoint.json` (atomically: temp file + rename), and only then deletes older
 * weights files. A crash at any moment leaves a `checkpoint.json` that names a
 * complete weights file with the right checksum: the previous checkpoint is never
 * corrupted.
 *
 * @module
 */
import { type HostTensor, readSafetensors, writeSafetensors } from "../../io/mod.ts";
import type { RngState } from "../../random/mod.ts";
import { type AdamWStateJson, EXP_AVG_PREFIX, EXP_AVG_SQ_PREFIX } from "./adamw.ts";

/** The format tag of {@linkcode CheckpointState}. */
export const CHECKPOINT_FORMAT = "seitpp-checkpoint-1";
/** The commit file of a run folder's checkpoint. */
export const CHECKPOINT_JSON = "checkpoint.json";

/** The JSON half of a checkpoint. */
export interface CheckpointState {
  /** Always {@linkcode CHECKPOINT_FORMAT}. */
  format: typeof CHECKPOINT_FORMAT;
  /** Completed optimizer steps. */
  step: number;
  /** The epoch to continue in. */
  epoch: number;
  /** The micro-batch index within `epoch` to continue at (0 = start of the epoch). */
  iter: number;
  /** The resolved config of the run (plain JSON). */
  config: unknown;
  /** Every random generator's state, by purpose (`data`, `mask`, `augment`, ...). */
  rng: Record<string, RngState>;
  /** The optimizer's JSON state, or `null` when none was saved. */
  optimizer: AdamWStateJson | null;
  /** The last scheduled learning rate (for the record; the schedule is recomputed). */
  lr: number;
  /** Anything else the loop keeps (best accuracy, last eval...). */
  extra: Record<string, unknown>;
  /** The weights file, relative to the checkpoint folder. */
  weights: string;
  /** Lower-case hex SHA-256 of the weights file. */
  sha256: string;
  /** ISO time of the save. */
  savedAt: string;
}

/** What {@linkcode saveCheckpoint} needs; `weights`, `sha256` and `savedAt` are filled in. */
export type CheckpointInput = Omit<CheckpointState, "format" | "weights" | "sha256" | "savedAt">;

/** A loaded checkpoint. */
export interface LoadedCheckpoint {
  /** The JSON half. */
  state: CheckpointState;
  /** Model tensors by reference name (no `optimizer.*` entries). */
  model: Map<string, HostTensor>;
  /** Optimizer moments (`optimizer.exp_avg(_sq).<name>`). */
  optimizer: Map<string, HostTensor>;
  /** The folder the checkpoint was read from. */
  dir: string;
}

/** A checkpoint that cannot be used: missing file, wrong checksum, malformed JSON. */
export class CheckpointError extends Error {
  /** The file at fault. */
  readonly path: string;
  /**
   * @param path the file at fault
   * @param message what is wrong with it
   */
  constructor(path: string, message: string) {
    super(message);
    this.name = "CheckpointError";
    this.path = path;
  }
}

/** How a checkpoint writes files; replaceable to simulate failures in tests. */
export interface CheckpointFs {
  /** Write bytes to a path (may be partial when it throws). */
  writeFile(path: string, bytes: Uint8Array): Promise<void>;
  /** Rename a file over another (atomic on one file system). */
  rename(from: string, to: string): Promise<void>;
}

const DENO_FS: CheckpointFs = {
  writeFile: (p, b) => Deno.writeFile(p, b),
  rename: (a, b) => Deno.rename(a, b),
};

/** Options of {@linkcode saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /** How many weights files to keep (the newest; at least 1). @default {1} */
  keep?: number;
  /** File operations (tests inject failures here). @default {Deno's} */
  fs?: CheckpointFs;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

let tmpCounter = 0;

async function atomicWrite(fs: CheckpointFs, path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${++tmpCounter}.tmp`;
  try {
    await fs.writeFile(tmp, bytes);
    await fs.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * @param step completed optimizer steps
 * @returns the weights file name of that step, e.g. `checkpoint-00000120.safetensors`
 */
export function weightsFileName(step: number): string {
  return `checkpoint-${String(step).padStart(8, "0")}.safetensors`;
}

/**
 * Save a checkpoint into a folder atomically (see the module doc).
 *
 * @param dir the run folder (must exist)
 * @param model model tensors by reference name
 * @param optimizer optimizer moments (from `AdamW.stateTensors()`), or an empty map
 * @param input the JSON state (step, epoch, config, Rng states, ...)
 * @param options how many to keep, file operations
 * @returns the saved JSON state
 * @throws {TypeError} when a model tensor name starts with `optimizer.`
 * @throws whatever the file system throws; the previous checkpoint is then intact
 */
export async function saveCheckpoint(
  dir: string,
  model: ReadonlyMap<string, HostTensor>,
  optimizer: ReadonlyMap<string, HostTensor>,
  input: CheckpointInput,
  options: SaveCheckpointOptions = {},
): Promise<CheckpointState> {
  const fs = options.fs ?? DENO_FS;
  const keep = Math.max(1, options.keep ?? 1);
  const all = new Map<string, HostTensor>();
  for (const [k, v] of model) {
    if (k.startsWith("optimizer.")) {
      throw new TypeError(`Cannot save model tensor "${k}": the "optimizer." prefix is reserved`);
    }
    all.set(k, v);
  }
  for (const [k, v] of optimizer) all.set(k, v);
  const bytes = writeSafetensors(all, { format: CHECKPOINT_FORMAT, step: String(input.step) });
  const weights = weightsFileName(input.step);
  const state: CheckpointState = {
    format: CHECKPOINT_FORMAT,
    ...input,
    weights,
    sha256: await sha256Hex(bytes),
    savedAt: new Date().toISOString(),
  };
  await atomicWrite(fs, `${dir}/${weights}`, bytes);
  await atomicWrite(
    fs,
    `${dir}/${CHECKPOINT_JSON}`,
    new TextEncoder().encode(JSON.stringify(state, null, 1) + "\n"),
  );
  // only now, older weights files may go
  const old: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (/^checkpoint-\d{8}\.safetensors$/.test(e.name) && e.name !== weights) old.push(e.name);
  }
  old.sort();
  for (const name of old.slice(0, Math.max(0, old.length - (keep - 1)))) {
    await Deno.remove(`${dir}/${name}`).catch(() => {});
  }
  return state;
}

/**
 * Load the checkpoint of a run folder (or a `checkpoint.json` path): parse the JSON,
 * read the weights file it names, verify its SHA-256, split model and optimizer tensors.
 *
 * @param path a run folder or its `checkpoint.json`
 * @returns state, model tensors and optimizer moments
 * @throws {CheckpointError} when the JSON or weights file is missing, malformed, or
 *   the checksum differs (the message names the file)
 */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  const jsonPath = path.endsWith(".json") ? path : `${path.replace(/\/$/, "")}/${CHECKPOINT_JSON}`;
  const dir = jsonPath.slice(0, Math.max(0, jsonPath.lastIndexOf("/"))) || ".";
  let text: string;
  try {
    text = await Deno.readTextFile(jsonPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(jsonPath, `No checkpoint at "${path}": ${jsonPath} does not exist`);
    }
    throw e;
  }
  let state: CheckpointState;
  try {
    state = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(jsonPath, `Cannot parse "${jsonPath}": ${(e as Error).message}`);
  }
  if (state?.format !== CHECKPOINT_FORMAT || typeof state.weights !== "string") {
    throw new CheckpointError(
      jsonPath,
      `Cannot load "${jsonPath}": not a ${CHECKPOINT_FORMAT} checkpoint`,
    );
  }
  const weightsPath = `${dir}/${state.weights}`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(weightsPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(
        weightsPath,
        `Checkpoint "${jsonPath}" names a missing file "${weightsPath}"`,
      );
    }
    throw e;
  }
  const sum = await sha256Hex(bytes);
  if (sum !== state.sha256) {
    throw new CheckpointError(
      weightsPath,
      `Cannot load "${weightsPath}": SHA-256 ${sum} differs from ${state.sha256} in "${jsonPath}"`,
    );
  }
  const { tensors } = readSafetensors(bytes, { source: weightsPath });
  const model = new Map<string, HostTensor>();
  const optimizer = new Map<string, HostTensor>();
  for (const [k, v] of tensors) {
    if (k.startsWith(EXP_AVG_PREFIX) || k.startsWith(EXP_AVG_SQ_PREFIX)) optimizer.set(k, v);
    else model.set(k, v);
  }
  return { state, model, optimizer, dir };
}

/** The weights-only file a finished run leaves in its folder. */
export const MODEL_FILE = "model.safetensors";

/**
 * Read model weights for initializing another run (e.g. fine-tuning from a pre-training
 * run): a `.safetensors` file, a `checkpoint.json`, or a run folder (its `model.safetensors`
 * when the run finished, else its latest checkpoint). Optimizer moments are dropped.
 *
 * @param path a file or a run folder
 * @returns model tensors by reference name, and the file they came from
 * @throws {CheckpointError} when nothing usable is there
 */
export async function readModelWeights(
  path: string,
): Promise<{ tensors: Map<string, HostTensor>; source: string }> {
  let file = path;
  let isDir = false;
  try {
    isDir = (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(path, `No model weights at "${path}": it does not exist`);
    }
    throw e;
  }
  if (isDir) {
    file = `${path.replace(/\/$/, "")}/${MODEL_FILE}`;
    try {
      await Deno.stat(file);
    } catch {
      const ck = await loadCheckpoint(path);
      return { tensors: ck.model, source: `${ck.dir}/${ck.state.weights}` };
    }
  } else if (path.endsWith(".json")) {
    const ck = await loadCheckpoint(path);
    return { tensors: ck.model, source: `${ck.dir}/${ck.state.weights}` };
  }
  const { tensors } = readSafetensors(await Deno.readFile(file), { source: file });
  for (const k of [...tensors.keys()]) if (k.startsWith("optimizer.")) tensors.delete(k);
  return { tensors, source: file };
}
