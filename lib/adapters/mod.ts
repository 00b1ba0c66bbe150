/**
 * Token-space augmentations that adapt embedding maps: ColorAdapt, Emb-Noise, Mixup/CutMix,
 * and TokenAdapt (conversion/inversion networks, geometric augmentation, training).
 *
 * @module
 */
export * from "./color_adapt.ts";
export * from "./emb_noise.ts";
export * from "./mixup.ts";
export * from "./state_dict.ts";
export * from "./sincos.ts";
export * from "./tokenadapt.ts";
export * from "./geometric.ts";
export * from "./tokenadapt_train.ts";
export * from "./gallery.ts";
export * from "./compare.ts";
