/**
 * Token-space augmentations that adapt embedding maps: ColorAdapt, Emb-Noise, Mixup/CutMix.
 *
 * @module
 */
export * from "./color_adapt.ts";
export * from "./emb_noise.ts";
export * from "./mixup.ts";
