/**
 * Bring a run of the authors' scripts back as one of our run folders: its `log.txt` as our
 * `log.jsonl` (a `step` record with the epoch's mean loss and lr, an `eval` record with
 * top-1/top-5 at each epoch's last optimizer step), its checkpoint's `model` as
 * `model.safetensors` (read by the safe reader: nothing in the file runs), and a
 * `config.json` whose `grid` section lets `deno task figures` and `loadGridRuns` plot it next
 * to our grid runs (and `imported` keeps the authors' args, epoch and scaler as JSON).
 *
 * A checkpoint (`checkpoint-N.pth`: `model`, `optimizer`, `epoch`, `scaler`, `args`) is read
 * whole by the safe reader; its `args` (an `argparse.Namespace`) becomes a JSON object. A
 * checkpoint whose pickle names any other class (e.g. a `pathlib` path put in the args) is
 * refused with the class named: nothing of it is imported, and the message says how to
 * re-save the weights alone. Optimizer moments are not imported (listed in the warnings).
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import {
  flattenTensors,
  type HostTensor,
  type JsonValue,
  PyDict,
  readTorchFile,
  UnsafePickleError,
  writeFileAtomic,
  writeSafetensors,
} from "../io/mod.ts";
import { parseTokenIndex, tokenIndexPath } from "../tokens/mod.ts";
import { type AuthorsEpoch, parseAuthorsLog } from "./authors_log.ts";
import { AUTHORS_SCRIPTS, type AuthorsPhase } from "./authors_args.ts";

/** A checkpoint or run folder of the authors' that cannot be imported as it is. */
export class AuthorsImportError extends Error {
  /** The file at fault. */
  readonly path: string;

  /**
   * @param path the file
   * @param message what is wrong
   */
  constructor(path: string, message: string) {
    super(message);
    this.name = "AuthorsImportError";
    this.path = path;
  }
}

/** Options of {@linkcode importAuthorsRun}. */
export interface AuthorsImportOptions {
  /** The runs folder the run folder is created in (e.g. `results/grid/runs`). */
  out: string;
  /** The run folder's name (its id in figures). @default {"authors-<phase>-<source folder>"} */
  id?: string;
  /** `pretrain` or `finetune` when neither the log nor the args tell. */
  phase?: AuthorsPhase;
  /** The method arm in figures. @default {"mtm" | "seitpp" (with --finetune) | "seitpp_nomtm"} */
  arm?: string;
  /** The method's label in figures. @default {"SeiT++ (authors' scripts, N GPUs)"} */
  method?: string;
  /** The budget the run is plotted with (ours: e.g. `fm8-600`). @default {the train token file's name} */
  budget?: string;
  /** The seed in figures. @default {args.seed, else 0} */
  seed?: number;
  /**
   * The training token file here (records and stored bytes; optimizer steps per epoch).
   * @default {args.train_token_file, when that file exists here}
   */
  data?: string;
  /** Replace an existing run folder of that name. @default {false} */
  overwrite?: boolean;
}

/** What {@linkcode importAuthorsRun} wrote. */
export interface AuthorsImportResult {
  /** The run folder. */
  dir: string;
  /** Which script the run came from. */
  phase: AuthorsPhase;
  /** Epochs in the log. */
  epochs: number;
  /** The checkpoint read, or null. */
  checkpoint: string | null;
  /** Model tensors written to model.safetensors. */
  tensors: number;
  /** Optimizer steps per epoch, or null when the training records are unknown (steps = epochs). */
  stepsPerEpoch: number | null;
  /** What was not imported or had to be assumed. */
  warnings: string[];
}

async function exists(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * The checkpoint of an authors' output folder: the `.pth` whose name ends in the highest
 * number (`checkpoint-399.pth`), else `checkpoint-last.pth`, `checkpoint-best.pth`, else
 * the most recently written `.pth`.
 * @param dir the folder
 * @returns the file, or null when there is none
 */
export async function latestAuthorsCheckpoint(dir: string): Promise<string | null> {
  const pth: { name: string; mtime: number }[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith(".pth")) continue;
    pth.push({ name: e.name, mtime: (await Deno.stat(join(dir, e.name))).mtime?.getTime() ?? 0 });
  }
  const numbered = pth.map((p) => [p.name, /(\d+)\.pth$/.exec(p.name)] as const)
    .filter(([, m]) => m !== null)
    .sort((a, b) => Number(b[1]![1]) - Number(a[1]![1]) || (a[0] < b[0] ? -1 : 1));
  if (numbered.length > 0) return join(dir, numbered[0][0]);
  for (const n of ["checkpoint-last.pth", "checkpoint-best.pth"]) {
    if (pth.some((p) => p.name === n)) return join(dir, n);
  }
  pth.sort((a, b) => b.mtime - a.mtime || (a.name < b.name ? -1 : 1));
  return pth.length === 0 ? null : join(dir, pth[0].name);
}

interface ReadCheckpoint {
  tensors: Map<string, HostTensor>;
  args: Record<string, JsonValue> | null;
  epoch: number | null;
  scaler: JsonValue | null;
  other: string[];
}

async function readCheckpoint(path: string, warnings: string[]): Promise<ReadCheckpoint> {
  let value;
  try {
    value = await readTorchFile(path);
  } catch (e) {
    if (e instanceof UnsafePickleError) {
      throw new AuthorsImportError(
        path,
        `Cannot import "${path}": its pickle names ${e.global}, which the safe reader does not ` +
          `rebuild (only tensors, plain containers and argparse.Namespace); nothing of it was run ` +
          `or imported. Where you trust the file, keep what is needed in PyTorch: ` +
          `torch.save({"model": c["model"], "epoch": c["epoch"], "args": vars(c["args"])}, "weights.pth") ` +
          `with paths and other objects in args turned into str`,
      );
    }
    throw e;
  }
  if (!(value instanceof PyDict)) {
    throw new AuthorsImportError(
      path,
      `Cannot import "${path}": it holds no dict (a ${typeof value})`,
    );
  }
  let model = value.get("model");
  const other: string[] = [];
  if (model === undefined) {
    // a bare state dict
    const flat = flattenTensors(value);
    if (flat.tensors.size === 0) {
      throw new AuthorsImportError(
        path,
        `Cannot import "${path}": no "model" entry and no tensors`,
      );
    }
    model = value;
  }
  const { tensors } = flattenTensors(model);
  if (tensors.size === 0) {
    throw new AuthorsImportError(path, `Cannot import "${path}": its "model" holds no tensors`);
  }
  let args: Record<string, JsonValue> | null = null;
  const a = value.get("args");
  if (a instanceof PyDict) {
    const j = flattenTensors(a).values;
    if (j !== null && typeof j === "object" && !Array.isArray(j)) args = j;
  } else if (a !== undefined && a !== null) {
    warnings.push(`"args" of ${path} is not a Namespace or dict; not imported`);
  }
  const epoch = typeof value.get("epoch") === "number" ? value.get("epoch") as number : null;
  const s = value.get("scaler");
  const scaler = s === undefined ? null : (flattenTensors(s).values ?? null);
  if (model !== value) {
    for (const k of value.keys()) {
      if (!["model", "args", "epoch", "scaler"].includes(String(k))) other.push(String(k));
    }
  }
  const opt = value.get("optimizer");
  if (opt !== undefined && model !== value) {
    const n = flattenTensors(opt).tensors.size;
    warnings.push(`optimizer state of ${basename(path)} (${n} tensors) not imported: weights only`);
  }
  return { tensors, args, epoch, scaler, other };
}

function phaseFromArgs(args: Record<string, JsonValue> | null): AuthorsPhase | null {
  if (args === null) return null;
  if ("mask_ratio_min" in args) return "pretrain";
  if ("layer_decay" in args || "nb_classes" in args) return "finetune";
  return null;
}

async function trainingRecords(
  path: string,
  warnings: string[],
): Promise<{ records: number; storageBytes: number } | null> {
  const data = await exists(path);
  if (data === null) return null;
  let index: string;
  try {
    index = tokenIndexPath(path);
  } catch (e) {
    warnings.push(`cannot count the records of ${path}: ${(e as Error).message}`);
    return null;
  }
  const bytes = await Deno.readFile(index);
  const offsets = parseTokenIndex(bytes, index);
  return { records: offsets.length - 1, storageBytes: data.size + bytes.length };
}

function int(v: JsonValue | undefined, fallback: number): number {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : fallback;
}

/**
 * Import a run of the authors' scripts (see the module doc).
 *
 * @param source a checkpoint (`checkpoint-N.pth`; `log.txt` next to it is read too) or an
 *   authors' output folder (`log.txt` and the latest checkpoint)
 * @param options where the run folder goes and how figures label it
 * @returns what was written
 * @throws {AuthorsImportError} for a checkpoint the safe reader refuses or without weights
 * @throws {SyntaxError} for a malformed log line (file and line named)
 * @throws {Deno.errors.NotFound} when `source` does not exist or holds neither log nor checkpoint
 * @throws {Deno.errors.AlreadyExists} when the run folder exists (without `overwrite`)
 */
export async function importAuthorsRun(
  source: string,
  options: AuthorsImportOptions,
): Promise<AuthorsImportResult> {
  const info = await exists(source);
  if (info === null) throw new Deno.errors.NotFound(`No authors' run at "${source}"`);
  const folder = info.isDirectory ? source : dirname(source);
  const checkpoint = info.isDirectory ? await latestAuthorsCheckpoint(source) : source;
  const logPath = join(folder, "log.txt");
  const logText = (await exists(logPath)) === null ? null : await Deno.readTextFile(logPath);
  if (checkpoint === null && logText === null) {
    throw new Deno.errors.NotFound(`"${source}" holds neither log.txt nor a checkpoint (.pth)`);
  }
  const warnings: string[] = [];
  if (logText === null) warnings.push(`no log.txt in ${folder}: no curves`);
  if (checkpoint === null) warnings.push(`no checkpoint in ${folder}: no weights`);
  const ck = checkpoint === null ? null : await readCheckpoint(checkpoint, warnings);
  const log = logText === null ? { phase: null, epochs: [] } : parseAuthorsLog(logText, logPath);
  const args = ck?.args ?? null;
  const phase = options.phase ?? log.phase ?? phaseFromArgs(args);
  if (phase === null) {
    throw new TypeError(
      `Cannot tell whether "${source}" is a pre-training or a fine-tuning run: pass --phase`,
    );
  }

  // optimizer steps per epoch, as their loader and accumulation count them
  const dataPath = options.data ??
    (typeof args?.train_token_file === "string" ? args.train_token_file : null);
  const counted = dataPath === null ? null : await trainingRecords(dataPath, warnings);
  const world = int(args?.world_size, 1), batch = int(args?.batch_size, 0);
  const accum = int(args?.accum_iter, 1);
  let stepsPerEpoch: number | null = null;
  if (counted !== null && batch > 0) {
    const perRank = Math.ceil(counted.records / world); // DistributedSampler pads
    stepsPerEpoch = Math.floor(Math.floor(perRank / batch) / accum);
  } else {
    warnings.push(
      dataPath === null || counted === null
        ? `the training token file ${
          dataPath ?? "(unknown)"
        } is not here: steps are epochs (pass --data)`
        : "the args give no batch size: steps are epochs",
    );
  }
  const stepOf = (e: AuthorsEpoch) => (e.epoch + 1) * (stepsPerEpoch ?? 1);

  const gpus = world;
  const finetuned = typeof args?.finetune === "string" && args.finetune !== "";
  const arm = options.arm ?? (phase === "pretrain" ? "mtm" : finetuned ? "seitpp" : "seitpp_nomtm");
  const id = options.id ?? `authors-${phase}-${basename(folder.replace(/\/$/, "")) || "run"}`;
  if (!/^[A-Za-z0-9_.-]+$/.test(id)) {
    throw new TypeError(`Run id ${JSON.stringify(id)} is not a plain name`);
  }
  const budget = options.budget ??
    (dataPath === null ? "authors" : basename(dataPath).replace(/-token\.data\.bin\.gz$/, ""));
  const dir = join(options.out, id);
  if ((await exists(dir)) !== null) {
    if (!options.overwrite) {
      throw new Deno.errors.AlreadyExists(
        `Run folder "${dir}" exists (pass --overwrite to replace it)`,
      );
    }
    await Deno.remove(dir, { recursive: true });
  }
  await Deno.mkdir(dir, { recursive: true });

  const enc = new TextEncoder();
  const json = (v: unknown) => enc.encode(JSON.stringify(v, null, 2) + "\n");
  const last = log.epochs.at(-1);
  const seed = options.seed ?? int(args?.seed, 0);
  const config = {
    kind: phase,
    imported: {
      from: source,
      script: AUTHORS_SCRIPTS[phase],
      checkpoint,
      log: logText === null ? null : logPath,
      epoch: ck?.epoch ?? null,
      gpus,
      stepsPerEpoch,
      stepUnit: stepsPerEpoch === null ? "epoch" : "optimizer step",
      args,
      scaler: ck?.scaler ?? null,
      otherEntries: ck?.other ?? [],
    },
    grid: {
      grid: "imported",
      id,
      kind: phase,
      arm,
      method: options.method ?? `SeiT++ (authors' scripts, ${gpus} GPU${gpus === 1 ? "" : "s"})`,
      // their step always runs the TokenAdapt half; ColorAdapt when its probability is > 0
      augment: phase === "pretrain"
        ? null
        : typeof args?.token_coloradapt_prob === "number" && args.token_coloradapt_prob === 0
        ? "tokenadapt"
        : "both",
      mtm: phase === "finetune" && finetuned,
      pretrain: null,
      budget,
      source: "authors",
      gridSide: int(args?.input_size, 224) / int(args?.token_patch_size, 8),
      records: counted?.records ?? 0,
      storageBytes: counted?.storageBytes ?? 0,
      labelBytes: 0,
      seed,
      imported: true,
    },
  };
  await writeFileAtomic(join(dir, "config.json"), json(config));

  const lines: unknown[] = [{
    type: "start",
    imported: true,
    from: source,
    script: AUTHORS_SCRIPTS[phase],
    config,
    seed,
  }];
  for (const e of log.epochs) {
    const step = stepOf(e);
    if (e.trainLoss !== null || e.trainLr !== null) {
      lines.push({
        type: "step",
        step,
        epoch: e.epoch,
        loss: e.trainLoss,
        lr: e.trainLr,
        mean: "epoch",
      });
    }
    lines.push({ type: "epoch", epoch: e.epoch, step, authors: e.values });
    if (e.testAcc1 !== null) {
      lines.push({
        type: "eval",
        epoch: e.epoch,
        step,
        top1: e.testAcc1 / 100,
        top5: e.testAcc5 === null ? null : e.testAcc5 / 100,
        loss: e.testLoss,
      });
    }
  }
  if (ck !== null) {
    await writeFileAtomic(
      join(dir, "model.safetensors"),
      writeSafetensors(ck.tensors, {
        source: checkpoint!,
        ...(ck.epoch === null ? {} : { epoch: String(ck.epoch) }),
      }),
    );
  }
  const steps = last === undefined ? 0 : stepOf(last);
  const lastEval = [...log.epochs].reverse().find((e) => e.testAcc1 !== null);
  const metrics = {
    runDir: dir,
    kind: phase,
    imported: true,
    stopped: "imported",
    steps,
    epochs: log.epochs.length,
    lastLoss: last?.trainLoss ?? null,
    ...(lastEval === undefined ? {} : {
      eval: {
        top1: lastEval.testAcc1! / 100,
        top5: lastEval.testAcc5 === null ? null : lastEval.testAcc5 / 100,
        loss: lastEval.testLoss,
        n: null,
      },
    }),
  };
  lines.push({ type: "end", ...metrics });
  await writeFileAtomic(
    join(dir, "log.jsonl"),
    enc.encode(lines.map((l) => JSON.stringify(l)).join("\n") + "\n"),
  );
  if (log.epochs.length > 0) await writeFileAtomic(join(dir, "metrics.json"), json(metrics));
  return {
    dir,
    phase,
    epochs: log.epochs.length,
    checkpoint,
    tensors: ck?.tensors.size ?? 0,
    stepsPerEpoch,
    warnings,
  };
}
