/**
 * What the `pretrain`, `finetune` and `demo` tasks share: resolving a run's config from
 * a JSON config file, flags and `--key=value` overrides; opening the data; building the
 * model; running; and turning known errors into one-line messages with exit codes.
 *
 * @module
 */
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { reportUserError } from "./_errors.ts";
import { resolveClassifierConfig, resolveMtmConfig, TokenClassifier } from "@lib/models";
import { Rng } from "@lib/random";
import { openTokenDataset, type TokenDataset } from "@lib/tokens";
import {
  applyOverrides,
  checkInitReport,
  checkRecipeVersion,
  checkResumeConfig,
  checkRunAugment,
  checkRunConfig,
  type ConfigSchema,
  FINETUNE_DEFAULTS,
  FINETUNE_SCHEMA,
  type FinetuneConfig,
  launchRun,
  listenForStop,
  loadCheckpoint,
  type LoadedCheckpoint,
  mergeConfig,
  parseTaskArgs,
  PRETRAIN_DEFAULTS,
  PRETRAIN_SCHEMA,
  type PretrainConfig,
  readConfigFile,
  readModelWeights,
  type ResumeChanges,
  RUN_AUGMENT_DEFAULTS,
  type RunAugmentKeys,
  runAugmentSchema,
  runIsFinished,
  RunStoppedError,
  type RunSummary,
  scheduledSteps,
  SCRATCH_INIT,
  type StopListener,
  type TaskArgs,
  withAddedRunKeys,
} from "@lib/train";
import { inNewRunFolder } from "./_run_folder.ts";
import { callerTaskArgs } from "./_paths.ts";

/** The config file a task reads when `--config` is not given. */
export const DEFAULT_CONFIGS = {
  pretrain: "configs/pretrain_demo.json",
  finetune: "configs/finetune_demo.json",
} as const;

/** The runs folder when `--out` is not given. */
export const DEFAULT_OUT = "runs";

/** A resolved run: config, where it goes, and the checkpoint to resume from. */
export interface ResolvedRun<C> {
  /** The resolved config. */
  config: C;
  /** The checkpoint to resume from, or null for a new run. */
  resume: LoadedCheckpoint | null;
  /** Where the config came from (file, or the resumed run). */
  source: string;
  /** For `--resume`: the overrides that changed the run's config (harmless or forced). */
  changes: ResumeChanges | null;
}

type Kind = "pretrain" | "finetune";

/** A task's config: the recipe's, plus the augmentation step's keys. */
export type TaskConfig<C> = C & RunAugmentKeys;

/**
 * The schema of a task's config: the recipe's and {@linkcode runAugmentSchema}'s.
 * @param kind which recipe
 * @returns the merged schema
 */
export function taskSchema(kind: Kind): ConfigSchema {
  const a = kind === "pretrain" ? PRETRAIN_SCHEMA : FINETUNE_SCHEMA;
  const b = runAugmentSchema(kind);
  return {
    nullable: { ...a.nullable, ...b.nullable },
    choices: { ...a.choices, ...b.choices },
    integers: [...(a.integers ?? []), ...(b.integers ?? [])],
    open: [...(a.open ?? []), ...(b.open ?? [])],
  };
}

/**
 * The built-in config of a task: the recipe's defaults, the augmentation keys, the model's
 * defaults (with timm's from-scratch init when `scratch`).
 */
function taskBase(kind: Kind, scratch: boolean): TaskConfig<PretrainConfig | FinetuneConfig> {
  const modelDefaults = kind === "pretrain"
    ? resolveMtmConfig({})
    : scratch
    ? resolveClassifierConfig(SCRATCH_INIT)
    : resolveClassifierConfig({});
  return {
    ...(kind === "pretrain" ? PRETRAIN_DEFAULTS : FINETUNE_DEFAULTS),
    ...RUN_AUGMENT_DEFAULTS,
    model: modelDefaults,
  } as unknown as TaskConfig<PretrainConfig | FinetuneConfig>;
}

/**
 * Resolve a run's config: built-in defaults, then the config file (or, for `--resume`,
 * the checkpoint's config), then `--data` / `--init`, then `--key=value` overrides; the
 * model section is completed and checked by the model's own resolve function. A fine-tuning
 * from scratch (`init` null) starts from timm's init (`SCRATCH_INIT`: pos_embed and head
 * trunc-normal 0.02) unless the file or a flag sets those model keys. A resumed run must
 * be of the current recipe version (`checkRecipeVersion`).
 *
 * @param kind which recipe
 * @param args parsed task arguments
 * @returns config, resume checkpoint, source
 * @throws {TypeError | RangeError | SyntaxError} for a bad config, naming the key
 */
export async function resolveRun(
  kind: "pretrain",
  args: TaskArgs,
): Promise<ResolvedRun<TaskConfig<PretrainConfig>>>;
export async function resolveRun(
  kind: "finetune",
  args: TaskArgs,
): Promise<ResolvedRun<TaskConfig<FinetuneConfig>>>;
export async function resolveRun(
  kind: Kind,
  args: TaskArgs,
): Promise<ResolvedRun<TaskConfig<PretrainConfig | FinetuneConfig>>> {
  const schema = taskSchema(kind);
  let config: TaskConfig<PretrainConfig | FinetuneConfig>;
  let resume: LoadedCheckpoint | null = null;
  let stored: unknown = null;
  let source: string;
  let fileConfig: unknown = null;
  if (args.resume !== undefined) {
    if (args.config !== undefined) {
      throw new TypeError("Cannot combine --config with --resume: a resumed run keeps its config");
    }
    resume = await loadCheckpoint(args.resume);
    config = resume.state.config as TaskConfig<PretrainConfig | FinetuneConfig>;
    if (config?.kind !== kind) {
      throw new TypeError(
        `Cannot resume "${args.resume}" with the ${kind} task: it is a ${config?.kind} run`,
      );
    }
    // a run written under an older training recipe cannot continue under this one
    checkRecipeVersion(config, args.resume);
    source = `${args.resume} (step ${resume.state.step})`;
    // older runs lack later keys: `workers` (they ran on 1)
    config = { ...RUN_AUGMENT_DEFAULTS, ...withAddedRunKeys(config) };
    // compared after the same completion as the overridden config (model keys added later)
    stored = { ...config, model: resolveModel(kind, config.model) };
  } else {
    source = args.config ?? DEFAULT_CONFIGS[kind];
    fileConfig = withoutGridProvenance(await readConfigFile(source), source);
    config = mergeConfig(taskBase(kind, false), fileConfig, schema, source);
  }
  const rest = (c: TaskConfig<PretrainConfig | FinetuneConfig>) => {
    if (args.data !== undefined) c = mergeConfig(c, { data: { train: args.data } }, schema);
    if (args.init !== undefined) {
      if (kind !== "finetune") throw new TypeError("--init is an option of the finetune task");
      // `--init=null` fine-tunes from scratch (e.g. to override a config file's init)
      c = mergeConfig(c, { init: args.init === "null" ? null : args.init }, schema);
    }
    return applyOverrides(c, args.overrides, schema);
  };
  config = rest(config);
  if (resume === null && kind === "finetune" && (config as FinetuneConfig).init === null) {
    // from scratch: timm's init under what the file and the flags set (REFERENCE.md section 5)
    config = rest(mergeConfig(taskBase(kind, true), fileConfig, schema, source));
  }
  config = { ...config, model: resolveModel(kind, config.model) };
  checkRunConfig(config);
  // the augmentation settings are checked now, not after the data is open
  checkRunAugment(kind, config);
  // an exact resume: overrides of what shapes the numbers are refused unless forced
  const changes = resume === null ? null : checkResumeConfig(resume.dir, stored, config, {
    step: resume.state.step,
    force: args.force,
  });
  return { config, resume, source, changes };
}

/**
 * A grid run's `config.json` (`deno task ablate`) carries a `grid` block that says which cell
 * of which grid the run was; it describes that run, not a setting. Re-running such a config
 * with `--config` (e.g. with one key changed) drops the block, saying so: the new run is not
 * a cell of that grid.
 * @param file the parsed config file
 * @param source its path, for the message
 * @returns the file without `grid`
 */
export function withoutGridProvenance(file: unknown, source: string): unknown {
  if (file === null || typeof file !== "object" || Array.isArray(file) || !("grid" in file)) {
    return file;
  }
  const { grid, ...rest } = file as Record<string, unknown>;
  const id = grid !== null && typeof grid === "object" && "id" in grid
    ? ` (grid run ${(grid as { id: unknown }).id})`
    : "";
  console.log(
    `config: ${source} is a grid run's config${id}; its "grid" block is not carried: this run is not part of that grid`,
  );
  return rest;
}

function resolveModel(kind: Kind, model: unknown): PretrainConfig["model"] {
  const m = kind === "pretrain"
    ? resolveMtmConfig(model as never)
    : resolveClassifierConfig(model as never);
  return m as unknown as PretrainConfig["model"];
}

/**
 * Open a token dataset for a model: the codebook size (and the labels, when the model has
 * classes) are checked against the model's.
 * @param path official-format data file
 * @param codebookSize K of the model
 * @param numClasses the classifier's classes: every label must be below it
 * @returns the dataset
 */
export async function openData(
  path: string,
  codebookSize: number,
  numClasses?: number,
): Promise<TokenDataset> {
  return await openTokenDataset(path, { codebookSize, numClasses });
}

/** Common options of the task runners. */
export interface TaskRunOptions {
  /** Show the progress line. @default {true} */
  progress?: boolean;
  /** Where human-readable lines go. @default {console.error} */
  print?: (line: string) => void;
  /**
   * Asked after every optimizer step: true saves a checkpoint and stops the run with
   * `RunStoppedError` (SIGINT / SIGTERM, see `listenForStop`). @default {never}
   */
  stop?: () => boolean;
}

/**
 * What a resumed run says before it trains: the overrides it applies, and whether it has
 * anything left to do. A finished run is left as it is (its metrics.json is returned).
 * @returns the finished run's summary, or null when there are steps left
 */
async function beforeResume(
  kind: Kind,
  r: ResolvedRun<TaskConfig<PretrainConfig | FinetuneConfig>>,
  records: number,
  print: (line: string) => void,
): Promise<RunSummary | null> {
  if (r.resume === null) return null;
  for (const [k, a, b] of r.changes?.harmless ?? []) {
    print(`${kind}: resuming with ${k} ${JSON.stringify(a)} -> ${JSON.stringify(b)}`);
  }
  for (const [k, a, b] of r.changes?.forced ?? []) {
    print(
      `${kind}: resuming with ${k} ${JSON.stringify(a)} -> ${
        JSON.stringify(b)
      } (--force: not an exact resume)`,
    );
  }
  if (!runIsFinished(r.resume.state, r.config, records)) return null;
  const path = `${r.resume.dir}/metrics.json`;
  let metrics: RunSummary;
  try {
    metrics = JSON.parse(await Deno.readTextFile(path)) as RunSummary;
  } catch {
    return null; // it stopped between its last checkpoint and its summary: finish that
  }
  print(
    `${kind}: run "${r.resume.dir}" is already finished (step ${r.resume.state.step} of ` +
      `${scheduledSteps(r.config, records)}); nothing to do, nothing changed`,
  );
  return { ...metrics, lastLoss: metrics.lastLoss ?? NaN, runDir: r.resume.dir };
}

/**
 * Refuse an `--init` that is not a pre-training of this model before a run folder is made
 * (finetune() checks it again when it loads the weights, for library callers and grids).
 */
async function checkInit(config: TaskConfig<FinetuneConfig>): Promise<void> {
  const model = new TokenClassifier(config.model as never, new Rng(config.seed).fork("init"));
  try {
    const { tensors, source } = await readModelWeights(config.init as string);
    checkInitReport(model.loadFromMtm(tensors), source);
  } finally {
    model.dispose();
  }
}

function recordsOf(data: TokenDataset, limit: number | null): number {
  return limit == null ? data.length : Math.min(limit, data.length);
}

/**
 * The pretrain task after argument parsing: backend, config, data, model, run.
 * @param args parsed arguments
 * @param options progress and output
 * @returns the run summary
 */
export async function runPretrainTask(
  args: TaskArgs,
  options: TaskRunOptions = {},
): Promise<RunSummary> {
  const print = options.print ?? ((l: string) => console.error(l));
  const info = await initBackend({ backend: (args.backend ?? "auto") as BackendRequest });
  print(describeBackend(info));
  const resolved = await resolveRun("pretrain", args);
  const { config, resume, source } = resolved;
  print(`pretrain: config ${source}; data ${config.data.train}`);
  const data = await openData(config.data.train, config.model.codebookSize as number);
  const records = recordsOf(data, config.data.limitTrain);
  scheduledSteps(config, records); // the plan fits the data (checked before a folder is made)
  const finished = await beforeResume("pretrain", resolved, records, print);
  if (finished !== null) return finished;
  if (config.augment !== null) print(`pretrain: augmentation ${describeAugment(config)}`);
  const run = async (runDir: string) => {
    print(`pretrain: run folder ${runDir}`);
    return await launchRun("pretrain", config as unknown as Record<string, unknown>, {
      runDir,
      resume,
      data,
      progress: options.progress,
      stop: options.stop,
      startInfo: { configSource: source },
    });
  };
  return resume !== null
    ? await run(resume.dir)
    : await inNewRunFolder(args.out ?? DEFAULT_OUT, "pretrain", run);
}

/**
 * The finetune task after argument parsing: backend, config, data, model, run.
 * @param args parsed arguments
 * @param options progress and output
 * @returns the run summary (with the last evaluation)
 */
export async function runFinetuneTask(
  args: TaskArgs,
  options: TaskRunOptions = {},
): Promise<RunSummary> {
  const print = options.print ?? ((l: string) => console.error(l));
  const info = await initBackend({ backend: (args.backend ?? "auto") as BackendRequest });
  print(describeBackend(info));
  const resolved = await resolveRun("finetune", args);
  const { config, resume, source } = resolved;
  print(
    `finetune: config ${source}; data ${config.data.train}; test ${config.data.test}; ` +
      `init ${config.init ?? "none (from scratch)"}`,
  );
  // labels are checked against the model's classes when the data opens (test data: launchRun)
  const C = config.model.numClasses as number;
  const data = await openData(config.data.train, config.model.codebookSize as number, C);
  const records = recordsOf(data, config.data.limitTrain);
  scheduledSteps(config, records); // the plan fits the data (checked before a folder is made)
  const finished = await beforeResume("finetune", resolved, records, print);
  if (finished !== null) return finished;
  if (config.augment !== null) print(`finetune: augmentation ${describeAugment(config)}`);
  if (config.init !== null && resume === null) await checkInit(config);
  const run = async (runDir: string) => {
    print(`finetune: run folder ${runDir}`);
    return await launchRun("finetune", config as unknown as Record<string, unknown>, {
      runDir,
      resume,
      data,
      progress: options.progress,
      stop: options.stop,
      print,
    });
  };
  return resume !== null
    ? await run(resume.dir)
    : await inNewRunFolder(args.out ?? DEFAULT_OUT, "finetune", run);
}

function describeAugment(c: RunAugmentKeys): string {
  const settings = Object.keys(c.augmentSettings).length
    ? ` with ${JSON.stringify(c.augmentSettings)}`
    : "";
  return `${c.augment}${settings}; codebook ${c.codebook ?? "next to the data"}; ` +
    `TokenAdapt ${c.tokenAdaptWeights ?? "none"}`;
}

/**
 * Run a task's main function with one-line error reports: exit 0 on success, 1 for a
 * known error (bad config, missing file, NaN loss...), 2 for a usage error. SIGINT and
 * SIGTERM make the run save a checkpoint and stop (`listenForStop`, the grid's mechanism;
 * `main` gets the listener's `stop` to pass on): exit 130 / 143.
 *
 * @param usage the help text
 * @param argv `Deno.args`
 * @param main the task body
 * @returns the exit code
 */
export async function taskMain(
  usage: string,
  argv: readonly string[],
  main: (args: TaskArgs, stop: StopListener["stop"]) => Promise<void>,
): Promise<number> {
  let args: TaskArgs;
  try {
    args = callerTaskArgs(parseTaskArgs(workersFlag(argv)));
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${usage}`);
    return 2;
  }
  if (args.help) {
    console.log(usage);
    return 0;
  }
  const signals = listenForStop({ label: "training" });
  try {
    await main(args, signals.stop);
    // a signal that came after the last step's check: everything is saved; say it stopped
    return signals.exitCode;
  } catch (e) {
    if (e instanceof RunStoppedError) {
      console.error(`stopped: ${e.message} (--resume ${e.runDir})`);
      return signals.exitCode || SIGNAL_EXIT_FALLBACK;
    }
    return reportUserError(e);
  } finally {
    signals.dispose();
  }
}

/** The exit status of a run stopped by its `stop` hook without a signal (as SIGINT's). */
const SIGNAL_EXIT_FALLBACK = 130;

/**
 * Accept `--workers N` as well as the config override `--workers=N`.
 * @param argv the command line
 * @returns it with `--workers N` joined into `--workers=N`
 */
export function workersFlag(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--workers" && i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
      out.push(`--workers=${argv[++i]}`);
    } else {
      out.push(argv[i]);
    }
  }
  return out;
}

/** The flags every training task takes, for help texts. */
export const COMMON_FLAGS = `Options:
  --config <file>    JSON config file (partial: merged over the built-in recipe)
  --data <file>      official-format training data (NAME-token.data.bin.gz; index and
                     NAME-label.txt next to it)
  --backend <name>   auto | wasm | cpu | webgpu | tensorflow (default auto)
  --out <dir>        where run folders are created (default ${DEFAULT_OUT}/)
  --resume <dir>     continue that run from its checkpoint, exactly: overrides of keys that
                     change its data order or schedule are refused (logEvery,
                     checkpointEvery, keepCheckpoints, the eval keys and a larger
                     maxSteps are allowed); a finished run is left as it is
  --force            with --resume: accept such overrides (not an exact resume any more)
  --workers N        data-parallel training on N CPU cores (the main thread + N-1 workers,
                     cpu / wasm backends; the config key "workers", default 1)
  --<key>=<value>    override a config key, e.g. --epochs=2 --model.depth=2 --maxSteps=100
                     (unknown keys and wrong types are refused)
  -h, --help         this text

Ctrl-C (SIGINT) or SIGTERM saves a checkpoint after the current step and exits 130 / 143;
continue with --resume <run folder>.`;
