/**
 * `deno task ablate --grid <config> [--out dir] [--jobs N] [--backend b]`: run a grid of
 * experiments (method arm x storage budget x seed, REFERENCE.md section 7 at small scale)
 * headless. Budgets are written and measured first, then every run goes to its own folder
 * `<out>/runs/<id>/`; finished runs are skipped, interrupted ones resumed from their
 * checkpoints; a summary table (mean +- std of test top-1 over seeds) ends it.
 *
 * Internally the same file is the per-run worker (`--worker`: reads one run spec as JSON on
 * stdin), so that each run has its own process and `--jobs 2` uses two cores.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { reportUserError } from "./_errors.ts";
import {
  accuracyDisplayTable,
  accuracyTable,
  loadGridRuns,
  tableView,
  writeTableFiles,
} from "@lib/report";
import {
  applyGridOverrides,
  expandGrid,
  type GridRunSpec,
  gridRunState,
  listenForStop,
  prepareBudgets,
  readConfigFile,
  resolveGridConfig,
  runGrid,
  runGridRun,
  RunStoppedError,
  signalGridWorkers,
  subprocessExecutor,
} from "@lib/train";
import { callerPath } from "./_paths.ts";

const USAGE = `Usage: deno task ablate --grid <config> [options]

Runs a grid of experiments (method arm x storage budget x seed) headless: writes the
storage budgets (class-balanced subsets in the official token format / gzipped idx pixels,
measured in stored bytes), then one run folder per run under <out>/runs/, MTM pre-training
runs first (shared by the fine-tunings that need them). Finished runs are skipped and
interrupted runs resume from their checkpoints, so the same command continues a grid.
Ctrl-C (or SIGTERM) makes every running run save a checkpoint and stop.

Options:
  --grid <file>      grid config (e.g. configs/grid_fmnist.json)
  --out <dir>        results folder (default runs/grid-<name>): <out>/data (budgets),
                     <out>/runs/<id> (run folders), <out>/summary.{md,csv}
  --jobs <n>         runs at a time, each in its own process (default 1)
  --backend <name>   auto | wasm | cpu | webgpu | tensorflow (default auto)
  --dry-run          list the runs and their states; run nothing
  --<key>=<value>    override a grid key, e.g. --seeds=[0] --finetuneSteps=20
  -h, --help         this text

Then: deno task figures --runs <out>/runs --out <out>/figures`;

interface AblateArgs {
  grid?: string;
  out?: string;
  jobs: number;
  backend: string;
  dryRun: boolean;
  worker: boolean;
  help: boolean;
  overrides: [string, string][];
}

function parseArgs(argv: readonly string[]): AblateArgs {
  const a: AblateArgs = {
    jobs: 1,
    backend: "auto",
    dryRun: false,
    worker: false,
    help: false,
    overrides: [],
  };
  const valued = ["grid", "out", "jobs", "backend"];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") a.help = true;
    else if (arg === "--dry-run") a.dryRun = true;
    else if (arg === "--worker") a.worker = true;
    else if (!arg.startsWith("--")) {
      throw new SyntaxError(`Unexpected argument ${JSON.stringify(arg)}: options are --key=value`);
    } else {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (valued.includes(name)) {
        const v = eq < 0 ? argv[++i] : arg.slice(eq + 1);
        if (v === undefined || v === "" || (eq < 0 && v.startsWith("--"))) {
          throw new SyntaxError(`Option --${name} needs a value`);
        }
        if (name === "jobs") {
          const n = Number(v);
          if (!(Number.isInteger(n) && n >= 1)) {
            throw new SyntaxError(`Option --jobs needs an integer >= 1, got ${JSON.stringify(v)}`);
          }
          a.jobs = n;
        } else if (name === "grid") a.grid = callerPath(v);
        else if (name === "out") a.out = callerPath(v);
        else a.backend = v;
      } else {
        if (eq < 0) {
          throw new SyntaxError(
            `Grid override ${JSON.stringify(arg)} needs a value: --${name}=<value>`,
          );
        }
        a.overrides.push([name, arg.slice(eq + 1)]);
      }
    }
  }
  return a;
}

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const c of Deno.stdin.readable) chunks.push(c);
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) all.set(c, o), o += c.length;
  return new TextDecoder().decode(all);
}

/** The worker: one run, spec on stdin. Exit 0 done, 130 stopped with a checkpoint, 1 failed. */
async function worker(a: AblateArgs): Promise<number> {
  const spec = JSON.parse(await readStdin()) as GridRunSpec;
  // the training tasks' mechanism; the grid reads exit 130 as "stopped" for either signal
  const signals = listenForStop({ label: spec.id, exitOnSecondInterrupt: false });
  const stop = signals.stop;
  try {
    const info = await initBackend({ backend: a.backend as BackendRequest });
    console.error(`${spec.id}: ${describeBackend(info)}`);
    const out = await runGridRun(spec, { progress: true, stop });
    const ev = out.summary?.eval;
    console.error(
      `${spec.id}: ${out.status}` + (ev ? `; test top-1 ${(100 * ev.top1).toFixed(2)}%` : ""),
    );
    return 0;
  } catch (e) {
    if (e instanceof RunStoppedError) {
      console.error(e.message);
      return 130;
    }
    console.error(`${spec.id}: ${(e as Error)?.stack ?? e}`);
    return 1;
  }
}

async function main(a: AblateArgs): Promise<number> {
  if (a.grid === undefined) throw new SyntaxError("Option --grid <config> is required");
  const grid = applyGridOverrides(
    resolveGridConfig(await readConfigFile(a.grid), a.grid),
    a.overrides,
    a.grid,
  );
  const out = (a.out ?? `runs/grid-${grid.name}`).replace(/\/+$/, "");
  const budgets = await prepareBudgets(grid, `${out}/data`, (l) => console.error(l));
  for (const b of budgets) {
    console.error(
      `grid: budget ${b.id}: ${b.records} ${
        b.kind === "tokens"
          ? `${b.gridSide}x${b.gridSide} token records`
          : `${b.gridSide}x${b.gridSide} images`
      }, ${b.storageBytes} stored bytes (${
        (b.storageBytes / b.records).toFixed(1)
      } B/image; labels ${b.labelBytes} B more)`,
    );
  }
  const specs = expandGrid(grid, budgets, { runsDir: `${out}/runs` });
  if (!a.dryRun) {
    // fail fast, with the backend's own message, before any run starts a child process
    const info = await initBackend({ backend: a.backend as BackendRequest });
    console.error(`grid: ${describeBackend(info)} (each run initializes its own)`);
  }
  if (a.dryRun) {
    for (const s of specs) {
      const st = await gridRunState(s);
      console.log(
        `${s.id}\t${st.state}${st.state === "resume" ? ` at step ${st.step}` : ""}` +
          (s.deps.length ? `\tafter ${s.deps.join(", ")}` : ""),
      );
    }
    console.log(`${specs.length} runs`);
    return 0;
  }
  console.error(
    `grid ${grid.name}: ${specs.length} runs (${
      specs.filter((s) => s.kind === "pretrain").length
    } pre-training), ${a.jobs} at a time, backend ${a.backend}, into ${out}/runs`,
  );
  let stopping = false;
  const onSignal = (sig: Deno.Signal) => () => {
    if (stopping && sig === "SIGINT") Deno.exit(130);
    stopping = true;
    console.error(`grid: ${sig}: running runs save a checkpoint and stop; nothing new starts`);
    signalGridWorkers("SIGTERM");
  };
  Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));
  const t0 = performance.now();
  const results = await runGrid(specs, {
    jobs: a.jobs,
    execute: subprocessExecutor({
      command: [
        Deno.execPath(),
        "run",
        "-A",
        fileURLToPath(import.meta.url),
        "--worker",
        "--backend",
        a.backend,
      ],
    }),
    stop: () => stopping,
  });
  const count = (s: string) => results.filter((r) => r.status === s).length;
  console.error(
    `grid ${grid.name}: ${count("ran")} ran, ${count("resumed")} resumed, ${
      count("skipped")
    } skipped, ` +
      `${count("failed")} failed, ${count("blocked")} blocked, ${count("stopped")} stopped in ${
        ((performance.now() - t0) / 60000).toFixed(1)
      } min`,
  );
  const runs = await loadGridRuns(`${out}/runs`);
  const table = accuracyTable(runs);
  const display = accuracyDisplayTable(table);
  await writeTableFiles(table, display, `${out}/summary`);
  console.log(tableView(display, { limit: 1000 }).toMarkdown());
  console.error(`grid: summary in ${out}/summary.md and ${out}/summary.csv`);
  return count("failed") + count("blocked") + count("stopped") > 0 ? 1 : 0;
}

if (import.meta.main) {
  let args: AblateArgs;
  try {
    args = parseArgs(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (args.worker) Deno.exit(await worker(args));
  try {
    Deno.exit(await main(args));
  } catch (e) {
    Deno.exit(reportUserError(e, ["GridConflictError"]));
  }
}
