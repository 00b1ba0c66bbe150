/**
 * Running an expanded grid ({@linkcode expandGrid}): one run in this process
 * ({@linkcode runGridRun}: MTM pre-training, token fine-tuning with the arm's augmentation
 * step, or the pixel baseline), and the scheduler ({@linkcode runGrid}) that skips finished
 * runs, resumes interrupted ones from their checkpoints, waits for the shared pre-training
 * runs, and runs up to `jobs` runs at a time through an executor: in this process, or one
 * child process per run ({@linkcode subprocessExecutor}, what `deno task ablate` uses, so
 * that `--jobs 2` uses two cores and every run starts from a fresh tensor engine).
 *
 * @module
 */
import { join } from "node:path";
import { loadCheckpoint } from "../engine/checkpoint.ts";
import { RunStoppedError } from "../engine/errors.ts";
import { type GridRunSpec, type GridRunState, gridRunState } from "./grid.ts";
import { launchRun } from "./launch.ts";
import type { RunSummary } from "../engine/runner.ts";

/** Files of a run folder that a fresh start removes (the worker's own log stays). */
const RUN_FILE = /^(config\.json|log\.jsonl|metrics\.json|checkpoint.*|model\.safetensors)$/;

/** The file a child process's output goes to, inside the run folder. */
export const WORKER_LOG = "worker.log";

async function clearRunFiles(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      if (RUN_FILE.test(e.name)) await Deno.remove(join(dir, e.name), { recursive: true });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Options of {@linkcode runGridRun}. */
export interface GridRunOptions {
  /** Show the progress line. @default {false} */
  progress?: boolean;
  /** Where human-readable lines go. @default {console.error} */
  print?: (line: string) => void;
  /** Asked after every step: true stops the run with a checkpoint ({@linkcode RunStoppedError}). */
  stop?: () => boolean;
}

/** What {@linkcode runGridRun} did. */
export interface GridRunOutcome {
  /** `skipped` (already finished), `ran` (from the start) or `resumed` (from a checkpoint). */
  status: "skipped" | "ran" | "resumed";
  /** The run summary (`null` when skipped). */
  summary: RunSummary | null;
}

/**
 * Run one grid run in this process (on the backend already initialized): skip it when its
 * folder says it is done, resume it from its checkpoint when there is one, else start it
 * (clearing what a run that died before its first checkpoint left).
 *
 * @param spec the run
 * @param options progress, output, stop hook
 * @returns what happened and the run summary
 * @throws {GridConflictError} when the folder holds another configuration
 * @throws {RunStoppedError} when `stop` asked it to stop (a checkpoint is on disk)
 * @throws {NonFiniteLossError} when the loss becomes NaN/Inf
 */
export async function runGridRun(
  spec: GridRunSpec,
  options: GridRunOptions = {},
): Promise<GridRunOutcome> {
  const state = await gridRunState(spec);
  if (state.state === "done") return { status: "skipped", summary: null };
  const print = options.print ?? ((l: string) => console.error(l));
  let resume = null;
  if (state.state === "resume") {
    resume = await loadCheckpoint(spec.dir);
  } else {
    await clearRunFiles(spec.dir);
    await Deno.mkdir(spec.dir, { recursive: true });
  }
  const summary = await launchRun(spec.kind, spec.config, {
    runDir: spec.dir,
    resume,
    progress: options.progress ?? false,
    print,
    stop: options.stop,
  });
  return { status: state.state === "resume" ? "resumed" : "ran", summary };
}

/** How the scheduler starts one run (in this process, or in a child process). */
export type GridExecutor = (spec: GridRunSpec, state: GridRunState) => Promise<void>;

/** The final status of one run of a grid. */
export type GridRunStatus = "skipped" | "ran" | "resumed" | "failed" | "blocked" | "stopped";

/** One line of {@linkcode runGrid}'s report. */
export interface GridRunResult {
  /** The run id. */
  id: string;
  /** What happened. */
  status: GridRunStatus;
  /** Wall seconds spent on it in this invocation. */
  seconds: number;
  /** The error message (failed), or the failed dependency (blocked). */
  message?: string;
  /** Test top-1 from its `metrics.json`, when it has one. */
  top1?: number;
}

/** Options of {@linkcode runGrid}. */
export interface RunGridOptions {
  /** Runs at a time. @default {1} */
  jobs?: number;
  /** Starts one run. */
  execute: GridExecutor;
  /** Where status lines go. @default {console.error} */
  print?: (line: string) => void;
  /** Asked before each launch: true launches nothing more (running runs finish or stop themselves). */
  stop?: () => boolean;
}

/**
 * The final test top-1 a run folder's `metrics.json` records.
 * @param dir the run folder
 * @returns top-1 in [0, 1], or undefined when there is none (unfinished, pre-training, unreadable)
 */
export async function finalTop1(dir: string): Promise<number | undefined> {
  try {
    const m = JSON.parse(await Deno.readTextFile(join(dir, "metrics.json")));
    return typeof m?.eval?.top1 === "number" ? m.eval.top1 : undefined;
  } catch {
    return undefined;
  }
}

function fmtSeconds(s: number): string {
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/**
 * Run a grid: every run's folder is checked first (a folder holding another configuration
 * stops everything before anything starts); finished runs are skipped; the rest start in
 * order as soon as their dependencies are done, up to `jobs` at a time. A failed run marks
 * the runs that depend on it `blocked`; the others go on.
 *
 * @param specs the expanded grid
 * @param options executor, parallelism, output, stop hook
 * @returns one result per run, in spec order
 * @throws {GridConflictError} for a folder holding another configuration (nothing was run)
 * @throws {RangeError} for `jobs` < 1 or a dependency that is not in the grid
 */
export async function runGrid(
  specs: readonly GridRunSpec[],
  options: RunGridOptions,
): Promise<GridRunResult[]> {
  const jobs = options.jobs ?? 1;
  if (!(Number.isInteger(jobs) && jobs >= 1)) {
    throw new RangeError(`Cannot run ${jobs} jobs at a time: expected an integer >= 1`);
  }
  const print = options.print ?? ((l: string) => console.error(l));
  const ids = new Set(specs.map((s) => s.id));
  for (const s of specs) {
    for (const d of s.deps) {
      if (!ids.has(d)) {
        throw new RangeError(`Run "${s.id}" depends on "${d}", which is not in the grid`);
      }
    }
  }
  const states = new Map<string, GridRunState>();
  for (const s of specs) states.set(s.id, await gridRunState(s));
  const results = new Map<string, GridRunResult>();
  const total = specs.length;
  let finished = 0;
  const report = async (r: GridRunResult, dir: string) => {
    r.top1 ??= await finalTop1(dir);
    results.set(r.id, r);
    finished++;
    const acc = r.top1 !== undefined ? `, top-1 ${(100 * r.top1).toFixed(2)}%` : "";
    const msg = r.message ? `: ${r.message}` : "";
    print(
      `grid [${finished}/${total}] ${r.id}: ${r.status}` +
        (r.status === "skipped" || r.status === "blocked" ? "" : ` in ${fmtSeconds(r.seconds)}`) +
        acc + msg,
    );
  };
  const pending: GridRunSpec[] = [];
  for (const s of specs) {
    if (states.get(s.id)!.state === "done") {
      await report({ id: s.id, status: "skipped", seconds: 0 }, s.dir);
    } else pending.push(s);
  }
  const running = new Map<string, Promise<void>>();
  const ok = (id: string) => {
    const st = results.get(id)?.status;
    return st === "skipped" || st === "ran" || st === "resumed";
  };
  const bad = (id: string) => {
    const st = results.get(id)?.status;
    return st === "failed" || st === "blocked" || st === "stopped";
  };
  while (pending.length > 0 || running.size > 0) {
    // runs whose dependency failed can never start
    for (let i = 0; i < pending.length; i++) {
      const s = pending[i];
      const failedDep = s.deps.find(bad);
      if (failedDep !== undefined) {
        pending.splice(i--, 1);
        await report({
          id: s.id,
          status: "blocked",
          seconds: 0,
          message: `needs ${failedDep}, which did not finish`,
        }, s.dir);
      }
    }
    const stopping = options.stop?.() ?? false;
    while (!stopping && running.size < jobs) {
      const i = pending.findIndex((s) => s.deps.every(ok));
      if (i < 0) break;
      const s = pending.splice(i, 1)[0];
      const st = await gridRunState(s);
      print(
        `grid: starting ${s.id}` + (st.state === "resume" ? ` (resuming at step ${st.step})` : ""),
      );
      const t0 = performance.now();
      const p = options.execute(s, st).then(
        () =>
          report({
            id: s.id,
            status: st.state === "resume" ? "resumed" : "ran",
            seconds: (performance.now() - t0) / 1000,
          }, s.dir),
        (e) =>
          report({
            id: s.id,
            status: e instanceof RunStoppedError || (e as Error)?.name === "RunStoppedError"
              ? "stopped"
              : "failed",
            seconds: (performance.now() - t0) / 1000,
            message: (e as Error)?.message ?? String(e),
          }, s.dir),
      ).finally(() => running.delete(s.id));
      running.set(s.id, p);
    }
    if (running.size === 0) {
      // nothing runs and nothing can start: stopped, or everything left is blocked
      for (const s of pending.splice(0)) {
        await report({
          id: s.id,
          status: stopping ? "stopped" : "blocked",
          seconds: 0,
          message: stopping ? "not started (stop requested)" : "dependencies did not finish",
        }, s.dir);
      }
      break;
    }
    await Promise.race(running.values());
  }
  return specs.map((s) => results.get(s.id)!);
}

/**
 * An executor that runs each run in this process ({@linkcode runGridRun}). Runs share the
 * tensor engine: use it with `jobs: 1`.
 *
 * @param options progress, output and stop hook of every run
 * @returns the executor
 */
export function inProcessExecutor(options: GridRunOptions = {}): GridExecutor {
  return async (spec) => {
    await runGridRun(spec, options);
  };
}

/** Options of {@linkcode subprocessExecutor}. */
export interface SubprocessExecutorOptions {
  /** The command that runs one run: it reads the {@linkcode GridRunSpec} as JSON on stdin. */
  command: readonly string[];
  /** Exit code that means "stopped on request with a checkpoint". @default {130} */
  stoppedCode?: number;
}

/** A child process of a run ended unsuccessfully. */
export class GridWorkerError extends Error {
  /** The run id. */
  readonly id: string;
  /** The exit code. */
  readonly code: number;

  /**
   * A child process's failure.
   * @param id the run id
   * @param code the exit code
   * @param tail the last lines of its output
   * @param stopped whether it stopped on request
   */
  constructor(id: string, code: number, tail: string, stopped: boolean) {
    super(
      `run ${id} ${stopped ? "stopped" : `exited with code ${code}`}${tail ? `: ${tail}` : ""}`,
    );
    this.name = stopped ? "RunStoppedError" : "GridWorkerError";
    this.id = id;
    this.code = code;
  }
}

/** The processes started by subprocess executors that are still running. */
const children = new Set<Deno.ChildProcess>();

/**
 * Send a signal to every run child process still running (e.g. forward SIGTERM so that
 * each saves a checkpoint and stops).
 * @param signal the signal
 */
export function signalGridWorkers(signal: Deno.Signal): void {
  for (const c of children) {
    try {
      c.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * An executor that starts one child process per run: `command` with the run spec as JSON
 * on stdin, its stdout and stderr appended to `<run dir>/worker.log`.
 *
 * @param options the command
 * @returns the executor; a failed run rejects with {@linkcode GridWorkerError} (named
 *   `RunStoppedError` when the child exited with `stoppedCode`)
 */
export function subprocessExecutor(options: SubprocessExecutorOptions): GridExecutor {
  const stoppedCode = options.stoppedCode ?? 130;
  return async (spec) => {
    await Deno.mkdir(spec.dir, { recursive: true });
    const logPath = join(spec.dir, WORKER_LOG);
    const log = await Deno.open(logPath, { create: true, append: true });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(options.command[0], {
        args: options.command.slice(1),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      log.close();
      throw e;
    }
    children.add(child);
    try {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(JSON.stringify(spec)));
      await writer.close();
      const pipe = async (s: ReadableStream<Uint8Array>) => {
        for await (const chunk of s) await log.write(chunk);
      };
      const [status] = await Promise.all([child.status, pipe(child.stdout), pipe(child.stderr)]);
      if (!status.success) {
        const text = await Deno.readTextFile(logPath).catch(() => "");
        const tail = text.trimEnd().split("\n").slice(-3).join(" | ");
        throw new GridWorkerError(spec.id, status.code, tail, status.code === stoppedCode);
      }
    } finally {
      children.delete(child);
      log.close();
    }
  };
}
