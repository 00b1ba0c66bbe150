/**
 * `deno task torch:export <run dir | config.json> --out DIR [options]`: a run (or a config)
 * for the authors' PyTorch scripts on many GPUs: `command.sh` (their `torchrun` launch line
 * reproducing the resolved config), `model.pth` (the run's weights), `pretrained.pth`
 * (fine-tuning's init weights), `codebook.ckpt`, `tokenadapt.ckpt` and `authors_args.json`.
 * See `@lib/bridge`.
 *
 * @module
 */
import { exportForAuthors, UnmappableSettingError } from "@lib/bridge";
import type { HostTensor } from "@lib/io";
import { readModelWeights } from "@lib/train";
import { reportUserError } from "./_errors.ts";
import { resolveRun } from "./_train_cli.ts";
import { callerPath } from "./_paths.ts";

const USAGE = `Usage: deno task torch:export <run dir | config.json> --out DIR [options]

Writes the authors' launch line (command.sh: torchrun ... main_mtm_pretrain.py or
main_mtm_finetune.py) whose arguments reproduce the run's resolved config, and the weights,
codebook and TokenAdapt files in PyTorch's format. Settings their scripts cannot reproduce
are refused with the setting named; bookkeeping settings are listed as comments.

Options:
  --out <dir>            the folder to write (required)
  --gpus N               GPUs per node (default 8); batch x accumulation x GPUs keeps the
                         effective batch
  --nodes N              nodes (default 1)
  --batch-per-gpu B      per-GPU batch (default: the run's micro-batch when it divides)
  --data-root <dir>      folder of the token files where the command runs (default: the
                         config's paths); "" for bare file names
  --kind <k>             pretrain | finetune, for a config file without "kind"
  --<key>=<value>        config overrides (config files only), e.g. --augment=seitpp
  -h, --help             this text`;

interface ExportArgs {
  source?: string;
  out?: string;
  gpus?: number;
  nodes?: number;
  batchPerGpu?: number;
  dataRoot?: string;
  kind?: "pretrain" | "finetune";
  overrides: [string, string][];
  help: boolean;
}

function parseArgs(argv: readonly string[]): ExportArgs {
  const a: ExportArgs = { overrides: [], help: false };
  const flags = ["out", "gpus", "nodes", "batch-per-gpu", "data-root", "kind"];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") {
      a.help = true;
      continue;
    }
    if (!arg.startsWith("--")) {
      if (a.source !== undefined) {
        throw new SyntaxError(`Unexpected argument ${JSON.stringify(arg)}`);
      }
      a.source = callerPath(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!flags.includes(name)) {
      if (eq < 0) throw new SyntaxError(`Unknown option ${arg} (config overrides are --key=value)`);
      a.overrides.push([name, arg.slice(eq + 1)]);
      continue;
    }
    const v = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (v === undefined || (v === "" && name !== "data-root")) {
      throw new SyntaxError(`Option --${name} needs a value`);
    }
    const int = () => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) {
        throw new SyntaxError(
          `Option --${name}: expected an integer >= 1, got ${JSON.stringify(v)}`,
        );
      }
      return n;
    };
    if (name === "out") a.out = callerPath(v);
    else if (name === "gpus") a.gpus = int();
    else if (name === "nodes") a.nodes = int();
    else if (name === "batch-per-gpu") a.batchPerGpu = int();
    else if (name === "data-root") a.dataRoot = v; // a folder on the machine that runs it
    else if (v === "pretrain" || v === "finetune") a.kind = v;
    else throw new SyntaxError(`Option --kind: pretrain or finetune, got ${JSON.stringify(v)}`);
  }
  if (!a.help && (a.source === undefined || a.out === undefined)) {
    throw new SyntaxError("Give a run folder or config file and --out <dir>");
  }
  return a;
}

function inferKind(c: Record<string, unknown>): "pretrain" | "finetune" | undefined {
  if (c.kind === "pretrain" || c.kind === "finetune") return c.kind;
  const m = (c.model ?? {}) as Record<string, unknown>;
  if ("numClasses" in m || "layerDecay" in c || "init" in c) return "finetune";
  if (Object.keys(m).some((k) => k.startsWith("decoder") || k.startsWith("maskRatio"))) {
    return "pretrain";
  }
  return undefined;
}

async function main(a: ExportArgs): Promise<void> {
  const source = a.source!;
  let config: Record<string, unknown>;
  let weights: Map<string, HostTensor> | null = null;
  if ((await Deno.stat(source)).isDirectory) {
    if (a.overrides.length > 0) {
      throw new TypeError("Config overrides apply to config files; a run folder exports as it ran");
    }
    config = JSON.parse(await Deno.readTextFile(`${source}/config.json`));
    try {
      weights = (await readModelWeights(source)).tensors;
    } catch (e) {
      if ((e as Error).name !== "CheckpointError") throw e;
      console.error(`torch:export: ${source} has no weights yet; exporting the command only`);
    }
  } else {
    const raw = JSON.parse(await Deno.readTextFile(source));
    const kind = a.kind ?? inferKind(raw);
    if (kind === undefined) throw new TypeError(`Cannot tell the kind of "${source}": pass --kind`);
    config = (await resolveRun(kind as "pretrain", {
      config: source,
      overrides: a.overrides,
      help: false,
    })).config as unknown as Record<string, unknown>;
  }
  const r = await exportForAuthors(config as never, {
    out: a.out!,
    gpus: a.gpus,
    nodes: a.nodes,
    batchPerGpu: a.batchPerGpu,
    files: { dataRoot: a.dataRoot ?? null },
    weights,
    source,
  });
  for (const w of r.command.warnings) console.error(`torch:export: not passed: ${w}`);
  console.log(`${r.files.length} files in ${a.out}: ${r.files.join(", ")}`);
  console.log(await Deno.readTextFile(`${a.out}/command.sh`));
}

if (import.meta.main) {
  let a: ExportArgs;
  try {
    a = parseArgs(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (a.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  try {
    await main(a);
  } catch (e) {
    Deno.exit(reportUserError(e, [UnmappableSettingError.name, "UnsafePickleError"]));
  }
}
