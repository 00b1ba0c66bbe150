/**
 * The training curve of a TokenAdapt run (`deno task tokenadapt:train`) from its `log.jsonl`
 * only: the training loss (mean over windows of steps) and, from the held-out evaluations,
 * the held-out loss and the agreement with `T(A(x))` per augmentation, against the step.
 * Same log, same figure (the SVG is byte-identical through `FigureExporter`).
 *
 * @module
 */
import { type Figure, figure, lineTrace, type PlotlyTrace } from "./figure.ts";

/** A held-out evaluation record of the log: `{ step, heldOut: { <A name>: agreement } }`. */
export interface TokenAdaptEvalRecord {
  /** Completed steps when it was measured. */
  step: number;
  /** Per augmentation A: agreement of TokenAdapt / naive with `T(A(x))`, and g's loss. */
  heldOut: Record<string, { tokenAdapt: number; naive: number; loss: number }>;
}

/** The curve's series, read from log lines. */
export interface TokenAdaptCurve {
  /** Window ends (steps) and the mean training loss over each window. */
  train: { step: number[]; loss: number[] };
  /** The held-out evaluations, in step order. */
  evals: TokenAdaptEvalRecord[];
}

/**
 * Read a TokenAdapt run's log lines into curve series.
 * @param text the contents of `log.jsonl`
 * @param window training steps per point of the loss line (at most a twentieth of the
 *   steps, at least 1). @default {50}
 * @returns the series
 * @throws {SyntaxError} for a line that is not JSON (names the line number)
 */
export function readTokenAdaptCurve(text: string, window = 50): TokenAdaptCurve {
  const steps: { step: number; loss: number }[] = [];
  const evals: TokenAdaptEvalRecord[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch (e) {
      throw new SyntaxError(`log.jsonl line ${i + 1}: ${(e as Error).message}`);
    }
    if (typeof r.heldOut === "object" && r.heldOut !== null) {
      evals.push(r as unknown as TokenAdaptEvalRecord);
    } else if (typeof r.loss === "number" && typeof r.step === "number") {
      steps.push({ step: r.step, loss: r.loss });
    }
  });
  const train = { step: [] as number[], loss: [] as number[] };
  window = Math.max(1, Math.min(window, Math.floor(steps.length / 20)));
  for (let s = 0; s < steps.length; s += window) {
    const w = steps.slice(s, s + window);
    if (w.length < window && s > 0) break; // a partial last window is noisier than the rest
    train.step.push(w[w.length - 1].step + 1);
    train.loss.push(w.reduce((a, r) => a + r.loss, 0) / w.length);
  }
  evals.sort((a, b) => a.step - b.step);
  return { train, evals };
}

const COLORS = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"];

/**
 * The figure: training loss and held-out loss (left axis), held-out agreement of TokenAdapt
 * (solid) and of naive warping (dotted) per augmentation (right axis), against the step.
 * @param curve the series
 * @param title figure title
 * @returns the figure
 */
export function tokenAdaptCurveFigure(curve: TokenAdaptCurve, title: string): Figure {
  const traces: PlotlyTrace[] = [
    lineTrace(curve.train.step, curve.train.loss, { name: "training loss", color: "#1f77b4" }),
  ];
  const names = [...new Set(curve.evals.flatMap((e) => Object.keys(e.heldOut)))];
  const x = (n: string) => curve.evals.filter((e) => n in e.heldOut).map((e) => e.step);
  const y = (n: string, k: "tokenAdapt" | "naive" | "loss") =>
    curve.evals.filter((e) => n in e.heldOut).map((e) => e.heldOut[n][k]);
  names.forEach((n, i) => {
    const color = COLORS[i % COLORS.length];
    traces.push(
      lineTrace(x(n), y(n, "loss"), { name: `held-out loss, A = ${n}`, color, dash: "dash" }),
    );
    const agree = lineTrace(x(n), y(n, "tokenAdapt"), {
      name: `held-out agreement, TokenAdapt, A = ${n}`,
      color,
      markers: true,
    });
    agree.yaxis = "y2";
    traces.push(agree);
    if (n !== "identity") {
      const naive = lineTrace(x(n), y(n, "naive"), {
        name: `held-out agreement, naive, A = ${n}`,
        color,
        dash: "dot",
      });
      naive.yaxis = "y2";
      traces.push(naive);
    }
  });
  return figure(traces, {
    title,
    xTitle: "optimizer step",
    yTitle: "cross-entropy (nats)",
    width: 900,
    height: 500,
    layout: {
      yaxis2: {
        title: { text: "codes equal to T(A(x))" },
        overlaying: "y",
        side: "right",
        range: [0, 1],
        tickformat: ".0%",
      },
      legend: { x: 1.08, y: 1, font: { size: 10 } },
      margin: { r: 330 },
    },
  });
}
