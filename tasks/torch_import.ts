/**
 * `deno task torch:import <checkpoint.pth | run output dir> --out RUNS [options]`: a run of
 * the authors' scripts as one of our run folders (log.jsonl, metrics.json, model.safetensors,
 * config.json with a `grid` section), so `deno task figures --runs RUNS` and the notebooks plot
 * it next to ours. The checkpoint goes through the safe reader: nothing in it runs.
 *
 * @module
 */
import { AuthorsImportError, importAuthorsRun } from "@lib/bridge";
import { reportUserError } from "./_errors.ts";
import { callerPath } from "./_paths.ts";

const USAGE = `Usage: deno task torch:import <checkpoint.pth | run output dir> --out RUNS [options]

Options:
  --out <dir>        the runs folder to create the run folder in (required), e.g.
                     results/grid/runs to plot it with that grid
  --id <name>        the run folder's name (default authors-<phase>-<source folder>)
  --budget <name>    the budget it is plotted with (default: the train token file's name)
  --arm <arm>        method arm: seitpp, seitpp_nomtm, mtm, ... (default from the run)
  --method <label>   the legend label
  --seed N           the seed shown (default: the run's)
  --data <file>      the training token file here (optimizer steps per epoch; default the
                     run's --train-token-file when it exists here; else steps are epochs)
  --phase <p>        pretrain | finetune when neither log nor args tell
  --overwrite        replace an existing run folder of that name
  -h, --help         this text`;

if (import.meta.main) {
  const flags = ["out", "id", "budget", "arm", "method", "seed", "data", "phase"];
  const opts: Record<string, string> = {};
  let source: string | undefined;
  let overwrite = false;
  try {
    for (let i = 0; i < Deno.args.length; i++) {
      const arg = Deno.args[i];
      if (arg === "-h" || arg === "--help") {
        console.log(USAGE);
        Deno.exit(0);
      }
      if (arg === "--overwrite") {
        overwrite = true;
        continue;
      }
      if (!arg.startsWith("--")) {
        if (source !== undefined) {
          throw new SyntaxError(`Unexpected argument ${JSON.stringify(arg)}`);
        }
        source = arg;
        continue;
      }
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (!flags.includes(name)) throw new SyntaxError(`Unknown option --${name}`);
      const v = eq < 0 ? Deno.args[++i] : arg.slice(eq + 1);
      if (v === undefined || v === "") throw new SyntaxError(`Option --${name} needs a value`);
      opts[name] = v;
    }
    if (source === undefined || opts.out === undefined) {
      throw new SyntaxError("Give a checkpoint or output folder and --out <runs dir>");
    }
    if (opts.phase !== undefined && opts.phase !== "pretrain" && opts.phase !== "finetune") {
      throw new SyntaxError(
        `Option --phase: pretrain or finetune, got ${JSON.stringify(opts.phase)}`,
      );
    }
    if (opts.seed !== undefined && !Number.isInteger(Number(opts.seed))) {
      throw new SyntaxError(`Option --seed: expected an integer, got ${JSON.stringify(opts.seed)}`);
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  try {
    const r = await importAuthorsRun(callerPath(source!), {
      out: callerPath(opts.out),
      id: opts.id,
      budget: opts.budget,
      arm: opts.arm,
      method: opts.method,
      seed: opts.seed === undefined ? undefined : Number(opts.seed),
      data: callerPath(opts.data),
      phase: opts.phase as "pretrain" | "finetune" | undefined,
      overwrite,
    });
    for (const w of r.warnings) console.error(`torch:import: ${w}`);
    console.log(
      `${r.phase} run -> ${r.dir}: ${r.epochs} epochs` +
        (r.stepsPerEpoch === null ? " (steps = epochs)" : `, ${r.stepsPerEpoch} steps/epoch`) +
        (r.checkpoint === null ? "" : `; ${r.tensors} tensors from ${r.checkpoint}`),
    );
  } catch (e) {
    Deno.exit(reportUserError(e, [AuthorsImportError.name, "UnsafePickleError", "AlreadyExists"]));
  }
}
