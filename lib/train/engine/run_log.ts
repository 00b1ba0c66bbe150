/**
 * Run folders and their JSONL logs.
 *
 * A run folder (`<out>/<YYYYMMDD-HHMMSS>-<name>/`) holds:
 * ```
 * config.json        the resolved config (plain JSON; what --resume reads back)
 * log.jsonl          one JSON object a line: a "start" record (config, versions, seed,
 *                    backend), then "step", "epoch", "eval", "checkpoint", "resume",
 *                    "error" and "end" records
 * metrics.json       the final summary (last loss, eval accuracy, time, samples/s)
 * checkpoint.json    + checkpoint-<step>.safetensors: the latest checkpoint
 * model.safetensors  the final model weights (reference state-dict names)
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { writeFileAtomic } from "../../io/mod.ts";

/** Versions recorded with every run. */
export interface RunVersions {
  /** seitpp's version (deno.json). */
  seitpp: string;
  /** Deno, V8 and TypeScript versions. */
  deno: string;
  /** V8 version. */
  v8: string;
  /** TypeScript version. */
  typescript: string;
  /** tfjs version. */
  tfjs: string;
  /** The backend that runs (`tf.getBackend()`). */
  backend: string;
}

/** The seitpp version recorded in run logs. */
export const SEITPP_VERSION = "0.1.0";

/** @returns the versions of everything that shapes the numbers of a run */
export function runVersions(): RunVersions {
  return {
    seitpp: SEITPP_VERSION,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    tfjs: tf.version.tfjs,
    backend: tf.getBackend(),
  };
}

/** One line of `log.jsonl`. `type` says what it is; the rest depends on it. */
export interface LogRecord {
  /** `start`, `step`, `epoch`, `eval`, `checkpoint`, `resume`, `error`, `end`, ... */
  type: string;
  /** Any JSON fields. */
  [key: string]: unknown;
}

/**
 * A new run folder name: `<YYYYMMDD-HHMMSS>-<name>` in UTC, unique within `outDir`
 * (a `-2`, `-3`... suffix when taken).
 *
 * @param outDir the runs folder (created if missing)
 * @param name a short label, e.g. `pretrain`
 * @param now the time to stamp
 * @returns the created folder's path
 */
export async function createRunDir(
  outDir: string,
  name: string,
  now: Date = new Date(),
): Promise<string> {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, "_");
  await Deno.mkdir(outDir, { recursive: true });
  for (let i = 1;; i++) {
    const dir = `${outDir.replace(/\/$/, "")}/${stamp}-${safe}${i > 1 ? `-${i}` : ""}`;
    try {
      await Deno.mkdir(dir);
      return dir;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

/**
 * Appends records to a run folder's `log.jsonl`, writes `config.json` and `metrics.json`.
 *
 * @example
 * ```ts ignore
 * const log = await RunLog.create(dir, { config, seed: 0 });
 * await log.write({ type: "step", step: 1, loss: 5.9, lr: 1e-4 });
 * await log.writeMetrics({ top1: 0.81 });
 * ```
 */
export class RunLog {
  /** The run folder. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** @returns the path of `log.jsonl` */
  get path(): string {
    return `${this.dir}/log.jsonl`;
  }

  /**
   * Start a run's log: writes `config.json` and the `start` record.
   * @param dir the run folder (must exist)
   * @param start the resolved config, the seed, and any other start fields
   * @returns the log
   */
  static async create(
    dir: string,
    start: { config: unknown; seed: number; [key: string]: unknown },
  ): Promise<RunLog> {
    const log = new RunLog(dir);
    await writeFileAtomic(
      `${dir}/config.json`,
      new TextEncoder().encode(JSON.stringify(start.config, null, 2) + "\n"),
    );
    await log.write({
      type: "start",
      time: new Date().toISOString(),
      versions: runVersions(),
      ...start,
    });
    return log;
  }

  /**
   * Continue the log of an existing run (for `--resume`): appends a `resume` record.
   * @param dir the run folder
   * @param fields what to record (e.g. the step resumed from)
   * @returns the log
   * @throws {Deno.errors.NotFound} when the folder has no log.jsonl
   */
  static async resume(dir: string, fields: Record<string, unknown>): Promise<RunLog> {
    const log = new RunLog(dir);
    await Deno.stat(log.path);
    await log.write({
      type: "resume",
      time: new Date().toISOString(),
      versions: runVersions(),
      ...fields,
    });
    return log;
  }

  /**
   * Append one record as a line.
   * @param record a JSON-serializable object with a `type`
   */
  async write(record: LogRecord): Promise<void> {
    await Deno.writeTextFile(this.path, JSON.stringify(record) + "\n", { append: true });
  }

  /**
   * Write `metrics.json` (atomically).
   * @param metrics the summary
   */
  async writeMetrics(metrics: Record<string, unknown>): Promise<void> {
    await writeFileAtomic(
      `${this.dir}/metrics.json`,
      new TextEncoder().encode(JSON.stringify(metrics, null, 2) + "\n"),
    );
  }
}

/**
 * Read a run's `log.jsonl`.
 * @param dir the run folder
 * @returns the records in order
 * @throws {SyntaxError} for a line that is not JSON (naming the line)
 */
export async function readRunLog(dir: string): Promise<LogRecord[]> {
  const path = `${dir}/log.jsonl`;
  const lines = (await Deno.readTextFile(path)).split("\n").filter((l) => l.trim() !== "");
  return lines.map((l, i) => {
    try {
      return JSON.parse(l) as LogRecord;
    } catch (e) {
      throw new SyntaxError(`Cannot parse line ${i + 1} of "${path}": ${(e as Error).message}`);
    }
  });
}
