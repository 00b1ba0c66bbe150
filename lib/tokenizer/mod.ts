/**
 * The VQ tokenizer that turns images into tokens and back: a small convolutional
 * encoder/decoder with a cosine (L2-normalized) codebook, trained with a
 * straight-through estimator, commitment loss, EMA codebook updates and dead-code
 * restarts, then pruned to the codes in use. Save/load as safetensors + JSON, with the
 * decoder loadable on its own (it ships in data/).
 *
 * @module
 */
export * from "./config.ts";
export * from "./model.ts";
export * from "./ema.ts";
export * from "./images.ts";
export * from "./bulk.ts";
export * from "./io.ts";
export * from "./train.ts";
export * from "./grid.ts";
export * from "./probe.ts";
export * from "./decoded.ts";
export * from "./pair.ts";
