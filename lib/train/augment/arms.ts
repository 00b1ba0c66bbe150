/**
 * The one vocabulary of method arms, imported by the tasks, the grid, the figures and the
 * notebooks.
 *
 * Two axes:
 * - the augmentation arm ({@linkcode AugmentArm}): `seit` (token RRC, CutMix, Emb-Noise),
 *   `coloradapt` / `tokenadapt` (one SeiT++ component added), `seitpp` (both: the section-6
 *   step), and `identity-tokenadapt` (the TokenAdapt half goes through f then g with the
 *   identity geometric transform: it separates g's reconstruction error from the
 *   augmentation), and `oracle-tokenadapt` (the TokenAdapt half's tokens are the tokenizer's
 *   codes of the records' pixel images under the same drawn transform and mixing: what a
 *   perfect TokenAdapt would give; ./oracle.ts);
 * - MTM pre-training or not. A fine-tuning arm with MTM starts from an MTM run pre-trained
 *   with the same arm's pre-training step: TokenAdapt arms pre-train with the TokenAdapt half
 *   (as the reference's SeiT++ does), the others without ({@linkcode pretrainArmOf}).
 *
 * {@linkcode METHOD_ARMS} names every (augmentation arm, MTM) pair the grid runs, under the
 * ids its run folders and figures use (`seit_mtm`, `seitpp_nomtm`, ...), plus the pixel
 * baseline.
 *
 * @module
 */
import {
  type AugmentStepConfig,
  resolveAugmentStepConfig,
  type ResolvedAugmentStepConfig,
} from "./augment_step.ts";

/** The augmentation arms, in display order. */
export const AUGMENT_ARMS = [
  "seit",
  "coloradapt",
  "tokenadapt",
  "seitpp",
  "identity-tokenadapt",
  "oracle-tokenadapt",
] as const;

/** An augmentation arm. */
export type AugmentArm = (typeof AUGMENT_ARMS)[number];

/** The arms pre-training has: with the TokenAdapt half or without it. */
export const PRETRAIN_AUGMENT_ARMS: readonly AugmentArm[] = ["seit", "seitpp"];

/** What an augmentation arm switches in the step. */
export interface AugmentArmSwitches {
  /** The TokenAdapt half. */
  tokenAdapt: boolean;
  /** ColorAdapt in the colour step. */
  colorAdapt: boolean;
  /** The TokenAdapt half's geometry. */
  tokenAdaptGeometry: "augment" | "identity";
  /** Where the TokenAdapt half's tokens come from: TokenAdapt's f and g, or the oracle. */
  tokenAdaptSource: "tokenadapt" | "oracle";
}

const TA = "tokenadapt" as const;
const SWITCHES: Record<AugmentArm, AugmentArmSwitches> = {
  seit: {
    tokenAdapt: false,
    colorAdapt: false,
    tokenAdaptGeometry: "augment",
    tokenAdaptSource: TA,
  },
  coloradapt: {
    tokenAdapt: false,
    colorAdapt: true,
    tokenAdaptGeometry: "augment",
    tokenAdaptSource: TA,
  },
  tokenadapt: {
    tokenAdapt: true,
    colorAdapt: false,
    tokenAdaptGeometry: "augment",
    tokenAdaptSource: TA,
  },
  seitpp: {
    tokenAdapt: true,
    colorAdapt: true,
    tokenAdaptGeometry: "augment",
    tokenAdaptSource: TA,
  },
  "identity-tokenadapt": {
    tokenAdapt: true,
    colorAdapt: false,
    tokenAdaptGeometry: "identity",
    tokenAdaptSource: TA,
  },
  // the TokenAdapt arm with the oracle's tokens in its TokenAdapt half
  "oracle-tokenadapt": {
    tokenAdapt: true,
    colorAdapt: false,
    tokenAdaptGeometry: "augment",
    tokenAdaptSource: "oracle",
  },
};

/**
 * Whether a value is an augmentation arm.
 * @param v any value
 * @returns true for one of {@linkcode AUGMENT_ARMS}
 */
export function isAugmentArm(v: unknown): v is AugmentArm {
  return typeof v === "string" && (AUGMENT_ARMS as readonly string[]).includes(v);
}

/**
 * The switches of an arm.
 * @param arm the arm
 * @returns TokenAdapt, ColorAdapt, the TokenAdapt half's geometry and token source
 * @throws {RangeError} for an unknown arm (the known ones listed)
 */
export function augmentArmSwitches(arm: AugmentArm): AugmentArmSwitches {
  if (!isAugmentArm(arm)) {
    throw new RangeError(
      `Unknown augmentation arm ${JSON.stringify(arm)}: expected one of ${AUGMENT_ARMS.join(", ")}`,
    );
  }
  return { ...SWITCHES[arm] };
}

/**
 * One arm of the ablation: the given settings with the arm's switches (Emb-Noise, the crop
 * ranges and the mixing are kept). The identity-TokenAdapt arm also mixes its TokenAdapt
 * half as the base half is mixed (CutMix only), so that f -> g is the only difference from
 * `seit` besides the crop.
 * @param base the settings of the full method
 * @param arm the arm
 * @returns the resolved settings
 * @throws {RangeError} for an unknown arm
 */
export function augmentStepForArm(
  base: AugmentStepConfig,
  arm: AugmentArm,
): ResolvedAugmentStepConfig {
  const s = augmentArmSwitches(arm);
  const r = resolveAugmentStepConfig({ ...base, ...s });
  return arm === "identity-tokenadapt" ? { ...r, tokenAdaptMix: r.baseMix } : r;
}

/**
 * The pre-training arm an MTM fine-tuning arm starts from: with the TokenAdapt half when the
 * arm uses TokenAdapt (the reference's SeiT++; the oracle arm too), else without.
 * @param arm the fine-tuning arm
 * @returns `seitpp` or `seit`
 */
export function pretrainArmOf(arm: AugmentArm): AugmentArm {
  return augmentArmSwitches(arm).tokenAdapt ? "seitpp" : "seit";
}

/** A method arm of the grid: an augmentation arm with or without MTM, or the pixel baseline. */
export interface MethodArmSpec {
  /** Display name. */
  label: string;
  /** The augmentation arm (`null` for the pixel baseline). */
  augment: AugmentArm | null;
  /** Fine-tune from MTM pre-training. */
  mtm: boolean;
  /** Line colour in figures. */
  color: string;
}

/**
 * Every method arm, in display order, under the ids run folders and figures use. SeiT uses
 * neither MTM nor TokenAdapt/ColorAdapt; SeiT++ uses both.
 */
export const METHOD_ARMS = {
  seit: { label: "SeiT", augment: "seit", mtm: false, color: "#1f77b4" },
  seit_mtm: { label: "SeiT+MTM", augment: "seit", mtm: true, color: "#ff7f0e" },
  seitpp_nomtm: { label: "SeiT++ w/o MTM", augment: "seitpp", mtm: false, color: "#2ca02c" },
  seitpp: { label: "SeiT++", augment: "seitpp", mtm: true, color: "#d62728" },
  ca: { label: "ColorAdapt only", augment: "coloradapt", mtm: false, color: "#9467bd" },
  ca_mtm: { label: "ColorAdapt only + MTM", augment: "coloradapt", mtm: true, color: "#c5b0d5" },
  ta: { label: "TokenAdapt only", augment: "tokenadapt", mtm: false, color: "#8c564b" },
  ta_mtm: { label: "TokenAdapt only + MTM", augment: "tokenadapt", mtm: true, color: "#c49c94" },
  ita: {
    label: "identity TokenAdapt (f -> g only)",
    augment: "identity-tokenadapt",
    mtm: false,
    color: "#bcbd22",
  },
  ota: {
    label: "oracle TokenAdapt (re-tokenized pixels)",
    augment: "oracle-tokenadapt",
    mtm: false,
    color: "#e377c2",
  },
  pixel: { label: "Pixels (ViT)", augment: null, mtm: false, color: "#7f7f7f" },
} as const satisfies Record<string, MethodArmSpec>;

/** A method arm's id. */
export type MethodArm = keyof typeof METHOD_ARMS;

/** Ids of the method arms, in display order. */
export const METHOD_ARM_IDS = Object.keys(METHOD_ARMS) as MethodArm[];

/** The four arms of the storage figure (SeiT, +MTM, +augmentations, SeiT++). */
export const STORAGE_ARMS: readonly MethodArm[] = ["seit", "seit_mtm", "seitpp_nomtm", "seitpp"];

/**
 * The method arm with this augmentation arm and MTM setting.
 * @param augment the augmentation arm
 * @param mtm with MTM pre-training
 * @returns its id, or undefined when the grid has none
 */
export function methodArmOf(augment: AugmentArm, mtm: boolean): MethodArm | undefined {
  return METHOD_ARM_IDS.find((k) =>
    METHOD_ARMS[k].augment === augment && METHOD_ARMS[k].mtm === mtm
  );
}
