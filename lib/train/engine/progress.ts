/**
 * Progress output for long runs: one line updated in place on a terminal, plain
 * lines at a bounded rate otherwise (logs, CI, notebooks).
 *
 * @module
 */

/** Where progress goes: anything with a synchronous byte writer. */
export interface ProgressSink {
  /** Write bytes (all of them). */
  writeSync(p: Uint8Array): number;
}

/** Options of {@linkcode Progress}. */
export interface ProgressOptions {
  /** Label in front of each line, e.g. `pretrain`. */
  label: string;
  /** Total number of steps. */
  total: number;
  /** Output. @default {Deno.stderr} */
  sink?: ProgressSink;
  /** Update in place (`\r`). @default {whether the sink is Deno.stderr and a terminal} */
  tty?: boolean;
  /** Least time between plain (non-TTY) lines, ms. @default {10000} */
  plainIntervalMs?: number;
  /** Clock (ms), injectable for tests. @default {performance.now} */
  now?: () => number;
  /** Step count already done when the run resumed (for the ETA). @default {0} */
  start?: number;
}

/**
 * Format a duration for humans.
 * @param seconds the duration
 * @returns `1h02m`, `3m05s` or `42s` (`?` for a negative or non-finite value)
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

function formatValue(v: number | string): string {
  if (typeof v === "string") return v;
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(4);
}

/**
 * A progress line: `pretrain 120/400 (30%) loss 5.1234 lr 1.20e-4 | 3.1 it/s | ETA 1m30s`.
 *
 * @example
 * ```ts
 * import { Progress } from "@lib/train";
 * const lines: string[] = [];
 * const sink = { writeSync: (b: Uint8Array) => (lines.push(new TextDecoder().decode(b)), b.length) };
 * const p = new Progress({ label: "demo", total: 2, sink, tty: false, plainIntervalMs: 0 });
 * p.update(1, { loss: 1.5 });
 * p.finish("done");
 * console.assert(lines[0].startsWith("demo 1/2 (50%) loss 1.5000"));
 * ```
 */
export class Progress {
  #o: Required<Omit<ProgressOptions, "sink" | "tty">> & { sink: ProgressSink; tty: boolean };
  #t0: number;
  #lastPlain = -Infinity;
  #lastLen = 0;
  #enc = new TextEncoder();

  /** @param options label, total, output */
  constructor(options: ProgressOptions) {
    const sink = options.sink ?? Deno.stderr;
    const tty = options.tty ?? (sink === Deno.stderr && Deno.stderr.isTerminal());
    this.#o = {
      label: options.label,
      total: options.total,
      sink,
      tty,
      plainIntervalMs: options.plainIntervalMs ?? 10_000,
      now: options.now ?? (() => performance.now()),
      start: options.start ?? 0,
    };
    this.#t0 = this.#o.now();
  }

  /**
   * Report that `done` of `total` steps are complete.
   * @param done steps done
   * @param fields values to show (loss, lr, ...)
   */
  update(done: number, fields: Record<string, number | string> = {}): void {
    const now = this.#o.now();
    const line = this.#line(done, fields, now);
    if (this.#o.tty) {
      const pad = Math.max(0, this.#lastLen - line.length);
      this.#write(`\r${line}${" ".repeat(pad)}`);
      this.#lastLen = line.length;
    } else if (now - this.#lastPlain >= this.#o.plainIntervalMs || done >= this.#o.total) {
      this.#write(line + "\n");
      this.#lastPlain = now;
    }
  }

  /**
   * End the progress display (a newline on a terminal) and print a final message.
   * @param message printed on its own line, if given
   */
  finish(message?: string): void {
    if (this.#o.tty && this.#lastLen > 0) this.#write("\n");
    this.#lastLen = 0;
    if (message !== undefined) this.#write(message + "\n");
  }

  /**
   * Print a line without breaking the in-place display.
   * @param message the line
   */
  log(message: string): void {
    if (this.#o.tty && this.#lastLen > 0) {
      this.#write(`\r${" ".repeat(this.#lastLen)}\r`);
      this.#lastLen = 0;
    }
    this.#write(message + "\n");
  }

  #line(done: number, fields: Record<string, number | string>, now: number): string {
    const { total, label, start } = this.#o;
    const pct = total > 0 ? Math.floor(100 * done / total) : 100;
    const parts = [`${label} ${done}/${total} (${pct}%)`];
    for (const [k, v] of Object.entries(fields)) parts.push(`${k} ${formatValue(v)}`);
    const elapsed = (now - this.#t0) / 1000;
    const rate = elapsed > 0 ? (done - start) / elapsed : 0;
    let line = parts.join(" ");
    if (rate > 0) {
      line += ` | ${rate >= 1 ? rate.toFixed(1) + " it/s" : (1 / rate).toFixed(1) + " s/it"}`;
      line += ` | ETA ${formatDuration((total - done) / rate)}`;
    }
    return line;
  }

  #write(s: string): void {
    const b = this.#enc.encode(s);
    let off = 0;
    while (off < b.length) off += this.#o.sink.writeSync(b.subarray(off));
  }
}
