/**
 * The draw trace of the augmentation step: every random decision of one batch as plain JSON
 * (the colour op and the samples it touched, per-sample crop area and aspect, the flip, which
 * affine ops fired and their values, the mixing lambda and mode, which samples went through
 * TokenAdapt), built from the step's {@linkcode AugmentStepRecord}. Hand a
 * {@linkcode DrawTracer} to `launchRun` / `openRunAugment` (`trace`) to record what a run's
 * step drew; {@linkcode summarizeTrace} gives the empirical frequencies and ranges.
 *
 * @module
 */
import type { AffineStep, GeometricParams, MixupParams } from "../../adapters/mod.ts";
import type { AugmentStepRecord } from "./augment_step.ts";

/** One crop: the accepted RRC try (null: torchvision's fallback box after ten rejections). */
export type TraceCrop = { area: number; aspect: number } | null;

/** The mixing of one half. */
export interface TraceMix {
  /** `cutmix`, `mixup`, or `none` (the prob draw said no). */
  mode: "cutmix" | "mixup" | "none";
  /** Weight of the sample itself. */
  lam: number;
}

/** Every random decision of one batch. */
export interface BatchTrace {
  /** Samples in the batch. */
  batch: number;
  /** The colour step: the op (`none` = identity), or null when no choice is drawn. */
  colour: { op: "noise" | "coloradapt" | "none"; samples: number[] } | null;
  /** The base half: sample indices `[start, end)`, crops, mixing. */
  base: { start: number; end: number; crops: TraceCrop[]; mix: TraceMix | null };
  /** The TokenAdapt half, or null when none of the batch went through TokenAdapt. */
  tokenAdapt: {
    start: number;
    end: number;
    /** Per sample: mirrored. */
    flip: boolean[];
    /** Per sample: the affine ops that fired, in order, with their values. */
    affine: AffineStep[][];
    crops: TraceCrop[];
    mix: TraceMix | null;
  } | null;
}

function traceMix(p: unknown): TraceMix | null {
  if (p === null || p === undefined) return null;
  const m = p as MixupParams;
  return { mode: m.lam === 1 && !m.cutmix ? "none" : m.cutmix ? "cutmix" : "mixup", lam: m.lam };
}

/**
 * The trace of one application of the step.
 * @param r the step's record
 * @returns the batch's trace
 */
export function traceOf(r: AugmentStepRecord): BatchTrace {
  const B = r.baseSamples + r.tokenAdaptSamples;
  const gp = r.geometric as GeometricParams | null;
  return {
    batch: B,
    colour: r.colorDrawn ? { op: r.color, samples: [...r.colorSamples] } : null,
    base: {
      start: 0,
      end: r.baseSamples,
      crops: [...r.rrcCrops],
      mix: traceMix(r.baseMix),
    },
    tokenAdapt: r.tokenAdaptSamples === 0 || gp === null ? null : {
      start: r.baseSamples,
      end: B,
      flip: [...gp.flip],
      affine: gp.steps.map((s) => s.map((x) => ({ ...x }))),
      crops: [...r.geometricCrops],
      mix: traceMix(r.tokenAdaptMix),
    },
  };
}

/** Collects the traces of a run's batches. */
export interface DrawTracer {
  /** The batches traced so far. */
  readonly batches: BatchTrace[];
  /** Record one application (what `trace` options take). */
  record(r: AugmentStepRecord): void;
}

/**
 * A tracer that keeps every batch's trace in memory.
 * @returns the tracer
 */
export function createDrawTracer(): DrawTracer {
  const batches: BatchTrace[] = [];
  return { batches, record: (r) => void batches.push(traceOf(r)) };
}

/** Empirical frequencies and ranges of a trace (plain JSON). */
export interface TraceSummary {
  /** Batches. */
  batches: number;
  /** Fraction of batches per colour op (`null`-colour batches are not counted). */
  colour: { drawn: number; noise: number; coloradapt: number; none: number };
  /** Fraction of the batch the colour op touched, when it fired (min, max). */
  colourFraction: [number, number] | null;
  /** Fraction of each batch that went through TokenAdapt (min, max). */
  tokenAdaptFraction: [number, number];
  /** Whether the TokenAdapt samples were always the last ones. */
  tokenAdaptLast: boolean;
  /** Base crops: area and aspect (min, max), fallback count. */
  baseCrops: { n: number; area: [number, number]; aspect: [number, number]; fallbacks: number };
  /** TokenAdapt crops, as base crops (null without TokenAdapt). */
  tokenAdaptCrops: {
    n: number;
    area: [number, number];
    aspect: [number, number];
    fallbacks: number;
  } | null;
  /** Fraction of TokenAdapt samples flipped. */
  flip: number | null;
  /** Fraction of TokenAdapt samples whose affine chain fired (any op). */
  affineAny: number | null;
  /** Per op: fraction of TokenAdapt samples where it fired. */
  affineOps: Record<string, number>;
  /** Per op: value range. */
  affineRanges: Record<string, [number, number]>;
  /** Mixing per half: fraction of batches per mode and lambda range. */
  mix: Record<
    "base" | "tokenAdapt",
    { cutmix: number; mixup: number; none: number; lam: [number, number] } | null
  >;
}

function minmax(v: number[]): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const x of v) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return [lo, hi];
}

function cropSummary(crops: TraceCrop[]) {
  const ok = crops.filter((c): c is { area: number; aspect: number } => c !== null);
  return {
    n: crops.length,
    area: minmax(ok.map((c) => c.area)),
    aspect: minmax(ok.map((c) => c.aspect)),
    fallbacks: crops.length - ok.length,
  };
}

function mixSummary(ms: (TraceMix | null)[]) {
  const m = ms.filter((x): x is TraceMix => x !== null);
  if (m.length === 0) return null;
  const f = (mode: string) => m.filter((x) => x.mode === mode).length / m.length;
  return {
    cutmix: f("cutmix"),
    mixup: f("mixup"),
    none: f("none"),
    lam: minmax(m.map((x) => x.lam)),
  };
}

/**
 * Frequencies and ranges over traced batches.
 * @param batches the traces
 * @returns the summary
 */
export function summarizeTrace(batches: readonly BatchTrace[]): TraceSummary {
  const drawn = batches.filter((b) => b.colour !== null);
  const cf = (op: string) =>
    drawn.length === 0 ? 0 : drawn.filter((b) => b.colour!.op === op).length / drawn.length;
  const fired = drawn.filter((b) => b.colour!.op !== "none");
  const ta = batches.filter((b) => b.tokenAdapt !== null).map((b) => b.tokenAdapt!);
  const flips = ta.flatMap((t) => t.flip);
  const steps = ta.flatMap((t) => t.affine);
  const ops = ["rotate", "translateX", "translateY", "shearX", "shearY"];
  const affineOps: Record<string, number> = {};
  const affineRanges: Record<string, [number, number]> = {};
  for (const op of ops) {
    const vals = steps.flatMap((s) => s.filter((x) => x.kind === op).map((x) => x.value));
    affineOps[op] = steps.length === 0 ? 0 : vals.length / steps.length;
    if (vals.length > 0) affineRanges[op] = minmax(vals);
  }
  return {
    batches: batches.length,
    colour: {
      drawn: drawn.length,
      noise: cf("noise"),
      coloradapt: cf("coloradapt"),
      none: cf("none"),
    },
    colourFraction: fired.length === 0
      ? null
      : minmax(fired.map((b) => b.colour!.samples.length / b.batch)),
    tokenAdaptFraction: minmax(
      batches.map((b) =>
        b.tokenAdapt === null ? 0 : (b.tokenAdapt.end - b.tokenAdapt.start) / b.batch
      ),
    ),
    tokenAdaptLast: batches.every((b) => b.tokenAdapt === null || b.tokenAdapt.end === b.batch),
    baseCrops: cropSummary(batches.flatMap((b) => b.base.crops)),
    tokenAdaptCrops: ta.length === 0 ? null : cropSummary(ta.flatMap((t) => t.crops)),
    flip: flips.length === 0 ? null : flips.filter((x) => x).length / flips.length,
    affineAny: steps.length === 0 ? null : steps.filter((s) => s.length > 0).length / steps.length,
    affineOps,
    affineRanges,
    mix: {
      base: mixSummary(batches.map((b) => b.base.mix)),
      tokenAdapt: mixSummary(ta.map((t) => t.mix)),
    },
  };
}
