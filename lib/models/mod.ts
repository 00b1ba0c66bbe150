/**
 * Models: the MTM pre-training model, the token classifier, the pixel ViT baseline,
 * their presets, the shared ViT block and the differentiable ops they are built from
 * (hand-written gradients that keep wasm on its fast paths).
 *
 * Parameters are `tf.Variable`s keyed by the reference (PyTorch) state-dict names in a
 * {@linkcode ParamStore}; `stateDict()` / `loadStateDict()` speak PyTorch layout.
 *
 * @module
 */
export * from "./params.ts";
export * from "./init.ts";
export * from "./ops.ts";
export * from "./vit.ts";
export * from "./token_embed.ts";
export * from "./mtm.ts";
export * from "./mtm_inspect.ts";
export * from "./classifier.ts";
export * from "./pixel_vit.ts";
export * from "./presets.ts";
