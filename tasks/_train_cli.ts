/**
 * What the `pretrain`, `finetune` and `demo` tasks share: resolving a run's config from
 * a JSON config file, flags and `--key=value` overrides; opening the data; building the
 * model; running; and turning known errors into one-line messages with exit codes.
 *
 * @module
 */
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { reportUserError } from "./_errors.ts";
import { MtmModel, resolveClassifierConfig, resolveMtmConfig, TokenClassifier } from "@lib/models";
import { Rng } from "@lib/random";
import { openTokenDataset, type TokenDataset } from "@lib/tokens";
import {
  applyOverrides,
  checkRunAugment,
  checkRunConfig,
  type ConfigSchema,
  createRunDir,
  finetune,
  FINETUNE_DEFAULTS,
  FINETUNE_SCHEMA,
  type FinetuneConfig,
  loadCheckpoint,
  type LoadedCheckpoint,
  mergeConfig,
  openRunAugment,
  parseTaskArgs,
  pretrain,
  PRETRAIN_DEFAULTS,
  PRETRAIN_SCHEMA,
  type PretrainConfig,
  readConfigFile,
  RUN_AUGMENT_DEFAULTS,
  type RunAugmentKeys,
  runAugmentSchema,
  type RunSummary,
  type TaskArgs,
  withAddedRunKeys,
} from "@lib/train";
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
 * Resolve a run's config: built-in defaults, then the config file (or, for `--resume`,
 * the checkpoint's config), then `--data` / `--init`, then `--key=value` overrides; the
 * model section is completed and checked by the model's own resolve function.
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
  let source: string;
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
    source = `${args.resume} (step ${resume.state.step})`;
    // older runs lack later keys: `workers` (they ran on 1) and the augmentation keys (none)
    config = { ...RUN_AUGMENT_DEFAULTS, ...withAddedRunKeys(config) };
  } else {
    const modelDefaults = kind === "pretrain" ? resolveMtmConfig({}) : resolveClassifierConfig({});
    const base = {
      ...(kind === "pretrain" ? PRETRAIN_DEFAULTS : FINETUNE_DEFAULTS),
      ...RUN_AUGMENT_DEFAULTS,
      model: modelDefaults,
    } as unknown as TaskConfig<PretrainConfig | FinetuneConfig>;
    source = args.config ?? DEFAULT_CONFIGS[kind];
    config = mergeConfig(base, await readConfigFile(source), schema, source);
  }
  if (args.data !== undefined) config = mergeConfig(config, { data: { train: args.data } }, schema);
  if (args.init !== undefined) {
    if (kind !== "finetune") throw new TypeError("--init is an option of the finetune task");
    // `--init=null` fine-tunes from scratch (e.g. to override a config file's init)
    config = mergeConfig(config, { init: args.init === "null" ? null : args.init }, schema);
  }
  config = applyOverrides(config, args.overrides, schema);
  const model = kind === "pretrain"
    ? resolveMtmConfig(config.model as never)
    : resolveClassifierConfig(config.model as never);
  config = { ...config, model: model as unknown as PretrainConfig["model"] };
  checkRunConfig(config);
  // the augmentation settings are checked now, not after the data is open
  checkRunAugment(kind, config);
  return { config, resume, source };
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
  const { config, resume, source } = await resolveRun("pretrain", args);
  print(`pretrain: config ${source}; data ${config.data.train}`);
  const data = await openData(config.data.train, config.model.codebookSize as number);
  const augment = await openRunAugment("pretrain", config);
  if (augment !== null) print(`pretrain: augmentation ${describeAugment(config)}`);
  const model = new MtmModel(config.model as never, new Rng(config.seed).fork("init"));
  try {
    const runDir = resume?.dir ?? await createRunDir(args.out ?? DEFAULT_OUT, "pretrain");
    print(`pretrain: run folder ${runDir}`);
    return await pretrain({
      config,
      model,
      data,
      runDir,
      resume,
      progress: options.progress,
      augment: augment?.step.hook,
      startInfo: { configSource: source, records: data.length, gridSide: data.gridSide },
    });
  } finally {
    model.dispose();
    augment?.dispose();
  }
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
  const { config, resume, source } = await resolveRun("finetune", args);
  print(
    `finetune: config ${source}; data ${config.data.train}; test ${config.data.test}; ` +
      `init ${config.init ?? "none (from scratch)"}`,
  );
  const K = config.model.codebookSize as number;
  const C = config.model.numClasses as number;
  const data = await openData(config.data.train, K, C);
  const test = config.data.test === null ? null : await openData(config.data.test, K, C);
  const augment = await openRunAugment("finetune", config);
  if (augment !== null) print(`finetune: augmentation ${describeAugment(config)}`);
  const model = new TokenClassifier(config.model as never, new Rng(config.seed).fork("init"));
  try {
    const runDir = resume?.dir ?? await createRunDir(args.out ?? DEFAULT_OUT, "finetune");
    print(`finetune: run folder ${runDir}`);
    return await finetune({
      config,
      model,
      data,
      test,
      runDir,
      resume,
      progress: options.progress,
      print,
      augment: augment?.step.hook,
    });
  } finally {
    model.dispose();
    augment?.dispose();
  }
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
 * known error (bad config, missing file, NaN loss...), 2 for a usage error.
 *
 * @param usage the help text
 * @param argv `Deno.args`
 * @param main the task body
 * @returns the exit code
 */
export async function taskMain(
  usage: string,
  argv: readonly string[],
  main: (args: TaskArgs) => Promise<void>,
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
  try {
    await main(args);
    return 0;
  } catch (e) {
    return reportUserError(e);
  }
}

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
  --resume <dir>     continue that run from its checkpoint (same config; overrides apply)
  --workers N        data-parallel training on N CPU cores (the main thread + N-1 workers,
                     cpu / wasm backends; the config key "workers", default 1)
  --<key>=<value>    override a config key, e.g. --epochs=2 --model.depth=2 --maxSteps=100
                     (unknown keys and wrong types are refused)
  -h, --help         this text`;
