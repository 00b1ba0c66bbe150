/**
 * Following a run's `log.jsonl` as it grows: every new `step` record becomes a progress update,
 * so a notebook shows a live loss curve for a run started by the very same recipe the headless
 * tasks use (in this process, or another one writing the same folder).
 *
 * @module
 */

import type { LogRecord } from "../train/mod.ts";

/** The progress calls a follower makes ({@linkcode LiveProgress} and `@lib/train`'s `Progress`). */
export interface ProgressLike {
  /** One step done, with its fields. */
  update(done: number, fields?: Record<string, number | string>): void;
  /** The run is over. */
  finish(message?: string): void;
  /** Optional: wait until every update was shown. */
  flush?(): Promise<void>;
}

/** Options for {@linkcode followRun}. */
export interface FollowRunOptions {
  /** Milliseconds between two reads of the log. @default 200 */
  intervalMs?: number;
  /** The record type that carries a step. @default "step" */
  type?: string;
  /** The numeric fields passed on to the progress. @default ["loss", "lr"] */
  fields?: readonly string[];
}

/** A running follower; stop it when the run has returned. */
export interface RunFollower {
  /** Records of the followed type seen so far. */
  readonly seen: number;
  /**
   * Reads what is left of the log, finishes the progress (with `message`) and stops.
   *
   * @param message Shown after the progress, e.g. the final loss.
   * @returns Resolves when the last update was handed to the progress (and flushed).
   */
  stop(message?: string): Promise<void>;
}

/**
 * Follows `<dir>/log.jsonl`: reads the complete lines added since the last read every
 * `intervalMs` and calls `progress.update(record.step, fields)` for each record of `type`. Timers
 * run while the training loop awaits (log writes, tensor reads), so an in-process run updates
 * live too. A missing log is waited for, a log rewritten from scratch (shorter, or with another
 * first line: a run restarted before its first checkpoint) is read again from its start, and a line that is not JSON fails the follower (the error is rethrown by
 * `stop`).
 *
 * @param dir The run folder.
 * @param progress Where updates go, e.g. a {@linkcode LiveProgress}.
 * @param options Interval, record type, fields.
 * @returns The follower; call `stop()` after the run returned.
 * @throws RangeError for an interval below 10 ms.
 * @example
 * ```ts ignore
 * const live = new LiveProgress({ total: config.maxSteps, label: "pretrain" });
 * const follower = followRun(runDir, live);
 * const summary = await pretrain({ config, model, data, runDir, progress: false });
 * await follower.stop(`loss ${summary.lastLoss.toFixed(3)}`);
 * ```
 */
export function followRun(
  dir: string,
  progress: ProgressLike,
  options: FollowRunOptions = {},
): RunFollower {
  const interval = options.intervalMs ?? 200;
  if (!(interval >= 10)) throw new RangeError(`Cannot follow a run every ${interval} ms`);
  const type = options.type ?? "step";
  const fields = options.fields ?? ["loss", "lr"];
  const path = `${dir.replace(/\/+$/, "")}/log.jsonl`;
  let consumed = 0; // characters of complete lines already handled
  let head = ""; // the first line read: a log whose first line changed was rewritten
  let lineNo = 0;
  let seen = 0;
  let error: unknown = undefined;
  let busy: Promise<void> = Promise.resolve();

  const handle = (record: LogRecord) => {
    if (record.type !== type || typeof record.step !== "number") return;
    const f: Record<string, number> = {};
    for (const k of fields) {
      const v = record[k];
      if (typeof v === "number") f[k] = v;
    }
    seen++;
    progress.update(record.step, f);
  };

  const read = async () => {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    if (consumed > 0 && (text.length < consumed || !text.startsWith(head))) {
      consumed = 0, lineNo = 0; // rewritten from scratch (its first record differs): start over
    }
    const end = text.lastIndexOf("\n") + 1;
    if (end <= consumed) return;
    if (consumed === 0) head = text.slice(0, text.indexOf("\n") + 1);
    const lines = text.slice(consumed, end).split("\n");
    consumed = end;
    for (const line of lines) {
      if (line.trim() === "") continue;
      lineNo++;
      let record: LogRecord;
      try {
        record = JSON.parse(line);
      } catch (e) {
        throw new SyntaxError(`Cannot parse line ${lineNo} of "${path}": ${(e as Error).message}`);
      }
      handle(record);
    }
  };

  const tick = () => {
    if (error !== undefined) return;
    busy = busy.then(read).catch((e) => {
      error ??= e;
    });
  };
  const timer = setInterval(tick, interval);

  return {
    get seen() {
      return seen;
    },
    async stop(message?: string): Promise<void> {
      clearInterval(timer);
      tick();
      await busy;
      if (error !== undefined) throw error;
      progress.finish(message);
      await progress.flush?.();
    },
  };
}
