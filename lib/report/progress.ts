/**
 * Live training progress for notebooks: in Jupyter one output updated in place (display_id)
 * with a bar, the metrics and a curve; elsewhere the terminal line of `@lib/train`'s
 * `Progress`. Same calls as that `Progress` (`update`, `finish`, `log`), so a training loop can
 * take either. Keeps the metric history (rows, or an arquero table).
 *
 * @module
 */

import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { formatDuration, Progress, type ProgressSink } from "../train/mod.ts";
import { $display, bundleDisplay, escapeHtml, inJupyter, type MimeBundle } from "./jupyter.ts";

/** Where a {@linkcode LiveProgress} shows itself. */
export type ProgressOutput = "auto" | "jupyter" | "terminal" | "none";

/** Options for {@linkcode LiveProgress}. */
export interface LiveProgressOptions {
  /** Total steps. */
  total: number;
  /** A label shown first, e.g. "pretrain". @default "" */
  label?: string;
  /** Least milliseconds between two Jupyter updates (the final one is never held back). @default 250 */
  throttleMs?: number;
  /** The metric drawn as a curve in Jupyter. @default the first numeric field passed to update */
  plotMetric?: string;
  /** "auto": Jupyter inside the kernel, else terminal. @default "auto" */
  output?: ProgressOutput;
  /** Clock in milliseconds (for tests). @default performance.now */
  now?: () => number;
  /** Terminal output (passed to `@lib/train`'s Progress). @default Deno.stderr */
  sink?: ProgressSink;
  /** Terminal: update in place. @default whether stderr is a terminal */
  tty?: boolean;
  /** Terminal, not in place: least ms between lines. @default 10000 */
  plainIntervalMs?: number;
}

/** One recorded update: the step and the numeric fields passed with it. */
export type ProgressRow = { step: number } & Record<string, number>;

let progressCounter = 0;

/**
 * A progress display for training loops. Call {@linkcode LiveProgress.update} every step
 * (cheap: throttled), {@linkcode LiveProgress.finish} at the end, and in a notebook
 * `await p.flush()` to be sure the last update was sent.
 *
 * @example
 * ```ts
 * import { LiveProgress } from "@lib/report";
 * const p = new LiveProgress({ total: 3, label: "demo", output: "none" });
 * for (let s = 1; s <= 3; s++) p.update(s, { loss: 1 / s });
 * p.finish();
 * console.log(String(p));
 * ```
 */
export class LiveProgress {
  /** The Jupyter display id of this progress output. */
  readonly displayId: string;
  readonly #total: number;
  readonly #label: string;
  readonly #throttleMs: number;
  readonly #output: Exclude<ProgressOutput, "auto">;
  readonly #now: () => number;
  readonly #terminal?: Progress;
  readonly #rows: ProgressRow[] = [];
  #fields: Record<string, number | string> = {};
  #plotMetric?: string;
  #start: number;
  #firstStep?: number;
  #lastShown = -Infinity;
  #shown = false;
  #finished = false;
  #message?: string;
  #pending: Promise<void> = Promise.resolve();
  #error: unknown = undefined;

  /**
   * @param options Total, label, throttle, output, clock.
   * @throws RangeError when total or throttleMs is negative or not finite.
   */
  constructor(options: LiveProgressOptions) {
    if (!(options.total >= 0 && Number.isFinite(options.total))) {
      throw new RangeError(`Cannot track progress to a total of ${options.total} steps`);
    }
    this.#total = options.total;
    this.#label = options.label ?? "";
    const auto = options.output ?? "auto";
    this.#output = auto === "auto" ? (inJupyter() ? "jupyter" : "terminal") : auto;
    this.#throttleMs = options.throttleMs ?? 250;
    if (!(this.#throttleMs >= 0 && Number.isFinite(this.#throttleMs))) {
      throw new RangeError(`Cannot throttle progress to ${options.throttleMs} ms`);
    }
    this.#plotMetric = options.plotMetric;
    this.#now = options.now ?? (() => performance.now());
    this.#start = this.#now();
    if (this.#output === "terminal") {
      this.#terminal = new Progress({
        label: this.#label,
        total: this.#total,
        sink: options.sink,
        tty: options.tty,
        plainIntervalMs: options.plainIntervalMs,
        now: this.#now,
      });
    }
    this.displayId = `seitpp-progress-${Date.now().toString(36)}-${++progressCounter}`;
  }

  /** The last step passed to update (NaN before the first). */
  get step(): number {
    return this.#rows.length ? this.#rows[this.#rows.length - 1].step : NaN;
  }

  /** Every recorded update, in order (the array is live; do not modify it). */
  get rows(): readonly ProgressRow[] {
    return this.#rows;
  }

  /**
   * Records a step and its fields; shows it if the throttle allows (always the first and the
   * last step).
   *
   * @param done Steps done so far (1..total).
   * @param fields Values to show, e.g. `{ loss, lr }`; numeric ones are recorded.
   * @throws RangeError after {@linkcode LiveProgress.finish}; rethrows a failed Jupyter update.
   */
  update(done: number, fields: Record<string, number | string> = {}): void {
    if (this.#finished) {
      throw new RangeError(`Cannot update progress "${this.#label}" after finish()`);
    }
    if (this.#error !== undefined) throw this.#error;
    if (this.#firstStep === undefined) {
      this.#firstStep = done;
      this.#start = this.#now();
    }
    const row: Record<string, number> = { step: done };
    for (const [k, v] of Object.entries(fields)) {
      if (typeof v === "number" && k !== "step") row[k] = v;
    }
    this.#rows.push(row as ProgressRow);
    this.#fields = fields;
    if (this.#plotMetric === undefined) {
      const first = Object.keys(row).find((k) => k !== "step");
      if (first !== undefined) this.#plotMetric = first;
    }
    if (this.#terminal) {
      this.#terminal.update(done, fields);
      return;
    }
    const t = this.#now();
    if (t - this.#lastShown >= this.#throttleMs || done >= this.#total) {
      this.#lastShown = t;
      this.#show();
    }
  }

  /**
   * Prints a line (stdout in Jupyter; on a terminal without breaking the progress line).
   *
   * @param message The line.
   */
  log(message: string): void {
    if (this.#terminal) this.#terminal.log(message);
    else if (this.#output === "jupyter") console.log(message);
  }

  /**
   * Ends the display: shows the final state (never throttled) with an optional message.
   * In Jupyter the update is sent asynchronously: `await flush()` to wait for it.
   *
   * @param message Shown after the progress (its own line on a terminal).
   */
  finish(message?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#message = message;
    if (this.#terminal) this.#terminal.finish(message);
    else this.#show();
  }

  /**
   * Waits until every Jupyter update was handed to the kernel.
   *
   * @returns Resolves when sent.
   * @throws The error of a failed Jupyter update.
   */
  async flush(): Promise<void> {
    await this.#pending;
    if (this.#error !== undefined) throw this.#error;
  }

  /**
   * The recorded rows as an arquero table (column "step" first, one column per numeric field;
   * null where a row lacks it).
   *
   * @returns A new table.
   */
  table(): ColumnTable {
    const names = ["step"];
    for (const r of this.#rows) {
      for (const k of Object.keys(r)) if (!names.includes(k)) names.push(k);
    }
    const cols: Record<string, (number | null)[]> = {};
    for (const n of names) cols[n] = this.#rows.map((r) => r[n] ?? null);
    return aq.table(cols);
  }

  #show(): void {
    if (this.#output !== "jupyter") return;
    const bundle = bundleDisplay(this.#bundle());
    const update = this.#shown;
    this.#shown = true;
    this.#pending = this.#pending.then(() =>
      Deno.jupyter.display(bundle, { display_id: this.displayId, update })
    ).catch((e) => {
      this.#error ??= e;
    });
  }

  #stats(): { elapsed: number; rate: number; eta?: number; frac: number } {
    const elapsed = (this.#now() - this.#start) / 1000;
    const done = this.#rows.length ? this.step - (this.#firstStep ?? 0) : 0;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const frac = this.#total > 0 ? Math.min(1, Math.max(0, this.step / this.#total)) : 1;
    const eta = rate > 0 ? Math.max(0, (this.#total - this.step) / rate) : undefined;
    return { elapsed, rate, eta, frac };
  }

  #headline(): string {
    const parts: string[] = [];
    if (this.#label) parts.push(this.#label);
    if (!this.#rows.length) return [...parts, `0/${this.#total}`].join(" ");
    const s = this.#stats();
    parts.push(`${this.step}/${this.#total} (${Math.floor(100 * s.frac)}%)`);
    const tail: string[] = [];
    if (s.rate > 0) {
      tail.push(s.rate >= 1 ? `${s.rate.toFixed(1)} it/s` : `${(1 / s.rate).toFixed(1)} s/it`);
    }
    tail.push(`elapsed ${formatDuration(s.elapsed)}`);
    if (!this.#finished && s.eta !== undefined) tail.push(`ETA ${formatDuration(s.eta)}`);
    if (this.#finished) tail.push(this.#message ?? "done");
    return [parts.join(" "), ...tail].join(" | ");
  }

  #fieldsLine(): string {
    return Object.entries(this.#fields).map(([k, v]) =>
      `${k} ${typeof v === "number" ? num(v) : v}`
    )
      .join(" ");
  }

  #bundle(): MimeBundle {
    return { "text/html": this.toHtml(), "text/plain": this.toString() };
  }

  /**
   * The progress as one text line: label, done/total, percent, fields, rate, elapsed, ETA.
   *
   * @returns Text.
   */
  toString(): string {
    const f = this.#fieldsLine();
    const head = this.#headline();
    if (!f) return head;
    const cut = head.indexOf(" | ");
    return cut < 0 ? `${head} ${f}` : `${head.slice(0, cut)} ${f}${head.slice(cut)}`;
  }

  /**
   * The progress as HTML: headline, bar, fields and a curve of the plotted metric (inline SVG,
   * no scripts, so updates are cheap).
   *
   * @returns HTML text.
   */
  toHtml(): string {
    const s = this.#rows.length ? this.#stats() : undefined;
    const frac = s?.frac ?? 0;
    const bar = `<div style="background:#e6e6e6;width:360px;height:8px;margin:3px 0;">` +
      `<div style="background:${this.#finished ? "#54a24b" : "#4c78a8"};width:${
        (100 * frac).toFixed(2)
      }%;height:8px;"></div></div>`;
    const fields = this.#fieldsLine();
    return `<div class="seitpp-progress" style="font-family:monospace;font-size:12px;">` +
      `<div>${escapeHtml(this.#headline())}</div>${bar}` +
      (fields ? `<div>${escapeHtml(fields)}</div>` : "") + this.#sparkline() + `</div>`;
  }

  #sparkline(): string {
    const key = this.#plotMetric;
    if (key === undefined) return "";
    const pts = this.#rows.filter((r) => Number.isFinite(r[key])).map((r) => [r.step, r[key]]);
    if (pts.length < 2) return "";
    const maxPoints = 300;
    const stride = Math.ceil(pts.length / maxPoints);
    const sampled = pts.filter((_, i) => i % stride === 0 || i === pts.length - 1);
    const W = 360, H = 70, pad = 2;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [x, y] of sampled) {
      x0 = Math.min(x0, x), x1 = Math.max(x1, x), y0 = Math.min(y0, y), y1 = Math.max(y1, y);
    }
    const sx = (x: number) => pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (W - 2 * pad);
    const sy = (y: number) => H - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (H - 2 * pad);
    const poly = sampled.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    return `<svg width="${W}" height="${H + 14}" xmlns="http://www.w3.org/2000/svg">` +
      `<rect x="0" y="0" width="${W}" height="${H}" fill="#fafafa" stroke="#ddd"/>` +
      `<polyline fill="none" stroke="#4c78a8" stroke-width="1.5" points="${poly}"/>` +
      `<text x="2" y="${H + 12}" font-size="10" fill="#555">${escapeHtml(key)}: ` +
      `min ${num(y0)}, max ${num(y1)}, last ${num(sampled[sampled.length - 1][1])}</text></svg>`;
  }

  /**
   * The Jupyter mimebundle of the current state (for displaying the object itself).
   *
   * @returns `text/html` and `text/plain`.
   */
  [$display](): MimeBundle {
    return this.#bundle();
  }
}

function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
}
