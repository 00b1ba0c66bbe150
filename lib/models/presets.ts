/**
 * Named model configurations. Each factory returns a resolved config; `overrides` are
 * applied on top and checked like any config (unknown keys refused). No size is
 * hard-coded in model code: these are the only places the numbers live.
 *
 * @module
 */
import {
  type ClassifierConfig,
  resolveClassifierConfig,
  type ResolvedClassifierConfig,
} from "./classifier.ts";
import { type MtmConfig, type ResolvedMtmConfig, resolveMtmConfig } from "./mtm.ts";
import {
  type PixelVitConfig,
  type ResolvedPixelVitConfig,
  resolvePixelVitConfig,
} from "./pixel_vit.ts";

/** The official token geometry: m = 28 (the central crop of n = 32), p = 2, K = 391, d = 32. */
export const OFFICIAL_TOKEN_GEOMETRY = {
  gridSide: 28,
  patchSize: 2,
  codebookSize: 391,
  tokenDim: 32,
} as const;

/** The stored grid side n of the official release (the model sees the m = 28 crop). */
export const OFFICIAL_STORED_GRID = 32;

/**
 * Official SeiT++ MTM ViT-B: 768 wide, 12 deep, 12 heads; decoder 512 x 8, 16 heads
 * (MAE's ViT-B decoder: the fixtures do not pin the official decoder size).
 * @param overrides fields to change
 * @returns resolved config
 */
export function mtmVitBase(overrides: MtmConfig = {}): ResolvedMtmConfig {
  return resolveMtmConfig({
    ...OFFICIAL_TOKEN_GEOMETRY,
    embedDim: 768,
    depth: 12,
    numHeads: 12,
    decoderEmbedDim: 512,
    decoderDepth: 8,
    decoderNumHeads: 16,
    ...overrides,
  });
}

/**
 * The parity fixtures' MTM (and DESIGN.md's timing reference): official token geometry,
 * encoder 192 x 4 with 3 heads, decoder 128 x 2 with 4 heads.
 * @param overrides fields to change
 * @returns resolved config
 */
export function mtmSmall(overrides: MtmConfig = {}): ResolvedMtmConfig {
  return resolveMtmConfig({
    ...OFFICIAL_TOKEN_GEOMETRY,
    embedDim: 192,
    depth: 4,
    numHeads: 3,
    decoderEmbedDim: 128,
    decoderDepth: 2,
    decoderNumHeads: 4,
    ...overrides,
  });
}

/**
 * A tiny MTM for unit tests: 8 x 8 grid, 2 x 2 patches (16 positions), K = 16, d = 8,
 * encoder 32 x 1 (2 heads), decoder 32 x 1 (2 heads).
 * @param overrides fields to change
 * @returns resolved config
 */
export function mtmTiny(overrides: MtmConfig = {}): ResolvedMtmConfig {
  return resolveMtmConfig({
    gridSide: 8,
    patchSize: 2,
    codebookSize: 16,
    tokenDim: 8,
    embedDim: 32,
    depth: 1,
    numHeads: 2,
    decoderEmbedDim: 32,
    decoderDepth: 1,
    decoderNumHeads: 2,
    ...overrides,
  });
}

/**
 * MTM for Fashion-MNIST token grids of side 8 (tokenizer downsample 4) or 16
 * (downsample 2): 1 x 1 patches on 8 x 8, 2 x 2 patches on 16 x 16 (64 positions either
 * way), encoder 192 x 4 (3 heads), decoder 128 x 2 (4 heads). `codebookSize` and
 * `tokenDim` must match the tokenizer's (pruned) codebook: pass them.
 * @param gridSide 8 or 16
 * @param overrides fields to change (codebookSize, tokenDim, ...)
 * @returns resolved config
 * @throws {RangeError} for another grid side
 */
export function mtmFashion(gridSide: 8 | 16, overrides: MtmConfig = {}): ResolvedMtmConfig {
  return resolveMtmConfig({ ...fashionGeometry(gridSide), ...mtmSmallWidths(), ...overrides });
}

function mtmSmallWidths(): MtmConfig {
  return {
    embedDim: 192,
    depth: 4,
    numHeads: 3,
    decoderEmbedDim: 128,
    decoderDepth: 2,
    decoderNumHeads: 4,
  };
}

function fashionGeometry(gridSide: number): {
  gridSide: number;
  patchSize: number;
  codebookSize: number;
  tokenDim: number;
} {
  if (gridSide !== 8 && gridSide !== 16) {
    throw new RangeError(
      `No Fashion-MNIST preset for a ${gridSide} x ${gridSide} token grid (8 or 16)`,
    );
  }
  return { gridSide, patchSize: gridSide === 8 ? 1 : 2, codebookSize: 256, tokenDim: 32 };
}

/**
 * Official SeiT fine-tuning classifier geometry (deit_base_token_32): ViT-B, 1000
 * classes, drop path 0.1, global average pooling.
 * @param overrides fields to change
 * @returns resolved config
 */
export function classifierVitBase(overrides: ClassifierConfig = {}): ResolvedClassifierConfig {
  return resolveClassifierConfig({
    ...OFFICIAL_TOKEN_GEOMETRY,
    numClasses: 1000,
    embedDim: 768,
    depth: 12,
    numHeads: 12,
    ...overrides,
  });
}

/**
 * The parity fixtures' classifier: official token geometry, 192 x 4 with 3 heads,
 * 1000 classes.
 * @param overrides fields to change
 * @returns resolved config
 */
export function classifierSmall(overrides: ClassifierConfig = {}): ResolvedClassifierConfig {
  return resolveClassifierConfig({
    ...OFFICIAL_TOKEN_GEOMETRY,
    numClasses: 1000,
    embedDim: 192,
    depth: 4,
    numHeads: 3,
    ...overrides,
  });
}

/**
 * A tiny classifier for unit tests (the {@linkcode mtmTiny} front end, 10 classes).
 * @param overrides fields to change
 * @returns resolved config
 */
export function classifierTiny(overrides: ClassifierConfig = {}): ResolvedClassifierConfig {
  return resolveClassifierConfig({
    gridSide: 8,
    patchSize: 2,
    codebookSize: 16,
    tokenDim: 8,
    numClasses: 10,
    embedDim: 32,
    depth: 1,
    numHeads: 2,
    ...overrides,
  });
}

/**
 * Classifier on Fashion-MNIST token grids (see {@linkcode mtmFashion}): 192 x 4, 3 heads,
 * 10 classes. Pass the tokenizer's `codebookSize` / `tokenDim`.
 * @param gridSide 8 or 16
 * @param overrides fields to change
 * @returns resolved config
 */
export function classifierFashion(
  gridSide: 8 | 16,
  overrides: ClassifierConfig = {},
): ResolvedClassifierConfig {
  return resolveClassifierConfig({
    ...fashionGeometry(gridSide),
    numClasses: 10,
    embedDim: 192,
    depth: 4,
    numHeads: 3,
    ...overrides,
  });
}

/**
 * Pixel ViT baseline for 28 x 28 grayscale Fashion-MNIST: 4 x 4 patches (49
 * positions), 192 x 4, 3 heads, 10 classes.
 * @param overrides fields to change
 * @returns resolved config
 */
export function pixelVitFashion(overrides: PixelVitConfig = {}): ResolvedPixelVitConfig {
  return resolvePixelVitConfig({
    imageSize: 28,
    channels: 1,
    patchSize: 4,
    numClasses: 10,
    embedDim: 192,
    depth: 4,
    numHeads: 3,
    ...overrides,
  });
}
