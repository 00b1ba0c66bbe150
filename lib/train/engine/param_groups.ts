/**
 * Which parameters the optimizer sees, with which weight decay and learning-rate scale.
 *
 * Two rules from the reference code, reimplemented from their stated behaviour:
 * - {@linkcode addWeightDecay} (timm 0.5.4 `optim_factory.add_weight_decay`, MTM
 *   pre-training): frozen parameters are skipped; 1-D parameters, names ending in
 *   `.bias` and names in a skip list get no decay; everything else decays.
 * - {@linkcode paramGroupsLrd} (MAE `util/lr_decay.param_groups_lrd`, fine-tuning):
 *   layer ids from {@linkcode vitLayerId}, `lrScale = layerDecay ** (numLayers - id)`,
 *   no decay for 1-D parameters and names in a no-decay list (`.bias` is not special
 *   here beyond being 1-D).
 *
 * @module
 */

/** What the grouping rules need to know about one parameter. */
export interface ParamInfo {
  /** Reference state-dict name, e.g. `blocks.0.attn.qkv.weight`. */
  name: string;
  /** The parameter's shape (`[]` for a scalar). */
  shape: readonly number[];
  /** Whether it is trained (frozen parameters are in no group). */
  trainable: boolean;
}

/** One parameter's optimizer settings. */
export interface ParamSetting {
  /** Reference state-dict name. */
  name: string;
  /** Group label: `decay` / `no_decay` (pre-training) or `layer_<id>_decay` / `layer_<id>_no_decay`. */
  group: string;
  /** Multiplier of the scheduled learning rate. */
  lrScale: number;
  /** Decoupled weight decay coefficient (0 for no decay). */
  weightDecay: number;
  /** Layer id under the layer-wise rule; absent for {@linkcode addWeightDecay}. */
  layerId?: number;
}

/** The result of a grouping rule: settings of the optimized parameters, and the rest. */
export interface ParamGrouping {
  /** Optimized parameters, in the input order. */
  settings: ParamSetting[];
  /** Names of frozen parameters (not in the optimizer), in the input order. */
  frozen: string[];
}

function checkParams(params: readonly ParamInfo[]): void {
  const seen = new Set<string>();
  for (const p of params) {
    if (typeof p.name !== "string" || p.name === "") {
      throw new TypeError(`Cannot group a parameter without a name: ${JSON.stringify(p)}`);
    }
    if (seen.has(p.name)) throw new TypeError(`Cannot group parameters: "${p.name}" appears twice`);
    seen.add(p.name);
  }
}

/**
 * timm's `add_weight_decay`: two groups, `decay` (weight decay `weightDecay`) and
 * `no_decay` (0) for 1-D parameters, names ending in `.bias` and names in `skipList`.
 * Every lr scale is 1. Frozen parameters are left out.
 *
 * @param params the model's parameters, in a stable order
 * @param weightDecay the decay of the `decay` group (0.05 in MTM pre-training)
 * @param skipList names that never decay (the MTM model has none)
 * @returns settings of the trainable parameters and the frozen names
 * @throws {TypeError} for duplicate or empty names
 * @throws {RangeError} for a negative or non-finite weight decay
 *
 * @example
 * ```ts
 * import { addWeightDecay } from "@lib/train";
 * const g = addWeightDecay([
 *   { name: "fc.weight", shape: [4, 3], trainable: true },
 *   { name: "mlm_layer.bias", shape: [1, 1, 5], trainable: true },
 *   { name: "pos_embed", shape: [1, 5, 4], trainable: false },
 * ], 0.05);
 * console.assert(g.settings[0].group === "decay" && g.settings[1].group === "no_decay");
 * console.assert(g.frozen[0] === "pos_embed");
 * ```
 */
export function addWeightDecay(
  params: readonly ParamInfo[],
  weightDecay: number,
  skipList: Iterable<string> = [],
): ParamGrouping {
  checkParams(params);
  if (!(weightDecay >= 0) || !Number.isFinite(weightDecay)) {
    throw new RangeError(`Cannot use weight decay ${weightDecay}: expected a finite number >= 0`);
  }
  const skip = new Set(skipList);
  const settings: ParamSetting[] = [];
  const frozen: string[] = [];
  for (const p of params) {
    if (!p.trainable) {
      frozen.push(p.name);
      continue;
    }
    const noDecay = p.shape.length === 1 || p.name.endsWith(".bias") || skip.has(p.name);
    settings.push({
      name: p.name,
      group: noDecay ? "no_decay" : "decay",
      lrScale: 1,
      weightDecay: noDecay ? 0 : weightDecay,
    });
  }
  return { settings, frozen };
}

/**
 * The ViT layer id of a parameter for layer-wise lr decay: `cls_token`, `pos_embed`
 * and `patch_embed.*` are layer 0, `blocks.<i>.*` is layer i+1, everything else
 * (final norm, head, and the token embedding `token_emb.*`) is `numLayers`.
 *
 * @param name reference state-dict name
 * @param numLayers number of blocks + 1
 * @returns the layer id in 0..numLayers
 * @throws {RangeError} when a block index does not fit `numLayers`
 */
export function vitLayerId(name: string, numLayers: number): number {
  if (name === "cls_token" || name === "pos_embed") return 0;
  if (name.startsWith("patch_embed")) return 0;
  if (name.startsWith("blocks")) {
    const i = Number(name.split(".")[1]);
    if (!Number.isInteger(i) || i < 0 || i + 1 > numLayers) {
      throw new RangeError(
        `Cannot place "${name}" in a layer: block index out of 0..${numLayers - 1}`,
      );
    }
    return i + 1;
  }
  return numLayers;
}

/** Options of {@linkcode paramGroupsLrd}. */
export interface LayerDecayOptions {
  /** Weight decay of decaying parameters (0.1 in fine-tuning). */
  weightDecay: number;
  /** Per-layer lr decay factor (0.65 in fine-tuning). */
  layerDecay: number;
  /** Number of ViT blocks + 1. */
  numLayers: number;
  /**
   * Names that never decay (the classifier's `no_weight_decay()`).
   * @default {["pos_embed", "cls_token", "dist_token"]}
   */
  noWeightDecayList?: Iterable<string>;
}

/** The classifier's `no_weight_decay()` set in the reference. */
export const VIT_NO_WEIGHT_DECAY: readonly string[] = ["pos_embed", "cls_token", "dist_token"];

/**
 * MAE's `param_groups_lrd`: layer-wise learning-rate decay for fine-tuning. Each
 * trainable parameter gets layer id {@linkcode vitLayerId},
 * `lrScale = layerDecay ** (numLayers - layerId)` and weight decay 0 when it is 1-D or
 * in `noWeightDecayList`, else `weightDecay`.
 *
 * @param params the classifier's parameters, in a stable order
 * @param options decay values and depth
 * @returns settings of the trainable parameters and the frozen names
 * @throws {TypeError} for duplicate or empty names
 * @throws {RangeError} for bad decay values or a block index beyond `numLayers`
 *
 * @example
 * ```ts
 * import { paramGroupsLrd } from "@lib/train";
 * const g = paramGroupsLrd([
 *   { name: "cls_token", shape: [1, 1, 8], trainable: true },
 *   { name: "blocks.0.attn.qkv.weight", shape: [24, 8], trainable: true },
 *   { name: "head.weight", shape: [10, 8], trainable: true },
 * ], { weightDecay: 0.1, layerDecay: 0.65, numLayers: 2 });
 * console.assert(Math.abs(g.settings[0].lrScale - 0.65 ** 2) < 1e-15);
 * console.assert(g.settings[0].weightDecay === 0 && g.settings[2].lrScale === 1);
 * ```
 */
export function paramGroupsLrd(
  params: readonly ParamInfo[],
  options: LayerDecayOptions,
): ParamGrouping {
  checkParams(params);
  const { weightDecay, layerDecay, numLayers } = options;
  if (!(weightDecay >= 0) || !Number.isFinite(weightDecay)) {
    throw new RangeError(`Cannot use weight decay ${weightDecay}: expected a finite number >= 0`);
  }
  if (!(layerDecay > 0) || !Number.isFinite(layerDecay)) {
    throw new RangeError(`Cannot use layer decay ${layerDecay}: expected a finite number > 0`);
  }
  if (!Number.isInteger(numLayers) || numLayers < 1) {
    throw new RangeError(`Cannot use numLayers ${numLayers}: expected an integer >= 1`);
  }
  const noDecayNames = new Set(options.noWeightDecayList ?? VIT_NO_WEIGHT_DECAY);
  const settings: ParamSetting[] = [];
  const frozen: string[] = [];
  for (const p of params) {
    if (!p.trainable) {
      frozen.push(p.name);
      continue;
    }
    const noDecay = p.shape.length === 1 || noDecayNames.has(p.name);
    const layerId = vitLayerId(p.name, numLayers);
    settings.push({
      name: p.name,
      group: `layer_${layerId}_${noDecay ? "no_decay" : "decay"}`,
      lrScale: layerDecay ** (numLayers - layerId),
      weightDecay: noDecay ? 0 : weightDecay,
      layerId,
    });
  }
  return { settings, frozen };
}
