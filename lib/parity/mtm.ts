/**
 * Parity section `mtm`: the MTM model against the reference fixtures.
 *
 * Builds the model from meta.json (`config.mtm` sizes, `config.mtm_fixed` geometry,
 * ratios and eps, `mtm.layernorm_eps`), loads `mtm_params.safetensors` strictly
 * (TokenAdapt weights are another section's), feeds `mtm_io` tokens with the recorded
 * noise and meta.json `mtm.mask_ratio`, and compares: the mask counts and masks
 * (exact), every activation in `mtm_io`, the logits, the per-token / per-patch losses
 * and the three scalar losses, and the gradient of `loss_s0` for every trainable
 * parameter against `mtm_grads` (and that exactly those parameters are trainable).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, toFloat32, toInt32 } from "../io/mod.ts";
import {
  MtmModel,
  type ParamStore,
  referenceMasks,
  type ResolvedMtmConfig,
  resolveMtmConfig,
} from "../models/mod.ts";
import { Rng } from "../random/mod.ts";
import {
  compareClose,
  compareExact,
  compareScalar,
  type ComparisonResult,
  resolveTolerance,
  type ToleranceSpec,
} from "./compare.ts";
import type { Fixture } from "./fixture.ts";
import type { ParitySection } from "./sections.ts";

const SECTION = "mtm";

/** An activation captured during a forward pass (a host copy). */
export interface Captured {
  /** Shape. */
  shape: number[];
  /** Values (a copy). */
  data: Float32Array;
}

/**
 * Collects activations passed to a model's `record` callback (as kept clones, so that
 * they can be read asynchronously on any backend afterwards).
 */
export class Recorder {
  #tensors = new Map<string, tf.Tensor>();

  /** The callback to pass as `record`. */
  readonly record = (name: string, t: tf.Tensor): void => {
    this.#tensors.get(name)?.dispose();
    this.#tensors.set(name, tf.keep(t.clone()));
  };

  /**
   * Read every recorded activation and dispose the clones.
   * @returns host copies by name
   */
  async read(): Promise<Map<string, Captured>> {
    const out = new Map<string, Captured>();
    for (const [name, t] of this.#tensors) {
      out.set(name, {
        shape: [...t.shape],
        data: Float32Array.from(await t.data() as Float32Array),
      });
      t.dispose();
    }
    this.#tensors.clear();
    return out;
  }

  /** Dispose whatever was not read. */
  dispose(): void {
    for (const t of this.#tensors.values()) t.dispose();
    this.#tensors.clear();
  }
}

/**
 * A host copy of a tensor's values with its shape (asynchronous read).
 * @param t the tensor
 * @returns shape and values
 */
export async function hostCopy(t: tf.Tensor): Promise<Captured> {
  return { shape: [...t.shape], data: Float32Array.from(await t.data() as Float32Array) };
}

/**
 * The value of a scalar tensor (asynchronous read).
 * @param t a one-element tensor
 * @returns its value
 */
export async function scalarOf(t: tf.Tensor): Promise<number> {
  return (await t.data())[0] as number;
}

/**
 * A pass/fail line for something that is not a tensor comparison (a load, a name set).
 * @param section section name
 * @param quantity what was checked
 * @param problems what is wrong (empty: passed)
 * @param count how many items were checked
 * @returns the result
 */
export function statusResult(
  section: string,
  quantity: string,
  problems: string[],
  count: number,
): ComparisonResult {
  const ok = problems.length === 0;
  return {
    section,
    quantity,
    shape: [count],
    max_abs_err: problems.length,
    max_rel_err: problems.length / Math.max(count, 1),
    worst_ratio: ok ? 0 : Infinity,
    tolerance: "exact",
    ok,
    ...(ok ? {} : { error: problems.join("; ") }),
  };
}

/**
 * Compare two sets of names exactly.
 * @param section section name
 * @param quantity what was checked
 * @param got computed names
 * @param ref reference names
 * @returns the result; the error lists what is missing and what is extra
 */
export function nameSetResult(
  section: string,
  quantity: string,
  got: Iterable<string>,
  ref: Iterable<string>,
): ComparisonResult {
  const g = new Set(got), r = new Set(ref);
  const missing = [...r].filter((n) => !g.has(n));
  const extra = [...g].filter((n) => !r.has(n));
  const problems = [];
  if (missing.length) problems.push(`missing: ${missing.join(", ")}`);
  if (extra.length) problems.push(`unexpected: ${extra.join(", ")}`);
  return statusResult(section, quantity, problems, r.size);
}

function num(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(`Fixture meta.json: ${what} = ${JSON.stringify(v)} is not a number`);
  }
  return v;
}

/**
 * The MTM configuration a fixture was made with (meta.json `config.mtm`,
 * `config.mtm_fixed`, `mtm.mask_ratio_min`, `mtm.layernorm_eps`); dropouts as
 * configured (the fixtures ran in eval mode, where they are off).
 *
 * @param fx the fixture
 * @returns the resolved config
 * @throws {RangeError | TypeError} when meta.json lacks a value or has a wrong one
 */
export function mtmConfigFromFixture(fx: Fixture): ResolvedMtmConfig {
  const m = fx.get<Record<string, unknown>>("config.mtm");
  const f = fx.get<Record<string, unknown>>("config.mtm_fixed");
  const eps = fx.get<Record<string, number>>("mtm.layernorm_eps");
  const tokenDim = num(f.token_embed_dim ?? f.in_chans, "config.mtm_fixed.token_embed_dim");
  return resolveMtmConfig({
    gridSide: num(f.img_size, "config.mtm_fixed.img_size"),
    patchSize: num(f.patch_size, "config.mtm_fixed.patch_size"),
    codebookSize: num(f.codebook_size, "config.mtm_fixed.codebook_size"),
    tokenDim,
    embedDim: num(m.embed_dim, "config.mtm.embed_dim"),
    depth: num(m.depth, "config.mtm.depth"),
    numHeads: num(m.num_heads, "config.mtm.num_heads"),
    decoderEmbedDim: num(m.decoder_embed_dim, "config.mtm.decoder_embed_dim"),
    decoderDepth: num(m.decoder_depth, "config.mtm.decoder_depth"),
    decoderNumHeads: num(m.decoder_num_heads, "config.mtm.decoder_num_heads"),
    mlpRatio: num(f.mlp_ratio, "config.mtm_fixed.mlp_ratio"),
    qkvBias: f.qkv_bias !== false,
    normEps: num(f.norm_eps, "config.mtm_fixed.norm_eps"),
    mlmNormEps: num(eps["mlm_layer.ln"] ?? 1e-5, "mtm.layernorm_eps.mlm_layer.ln"),
    maskRatioMin: num(f.mask_ratio_min, "config.mtm_fixed.mask_ratio_min"),
    maskRatioMax: num(f.mask_ratio_max, "config.mtm_fixed.mask_ratio_max"),
    maskRatioMu: num(f.mask_ratio_mu, "config.mtm_fixed.mask_ratio_mu"),
    maskRatioStd: num(f.mask_ratio_std, "config.mtm_fixed.mask_ratio_std"),
    dropRatio: num(fx.get("mtm.mask_ratio_min"), "mtm.mask_ratio_min"),
    labelSmoothing: num(f.smoothing ?? 0, "config.mtm_fixed.smoothing"),
    bceLoss: f.bce_loss === true,
  });
}

/**
 * Check that every LayerNorm epsilon meta.json lists for the model's own norms is the
 * one the config uses.
 * @param section section name
 * @param listed meta.json `<section>.layernorm_eps`
 * @param expected eps per LayerNorm module name under the config
 * @returns the result
 */
export function epsResult(
  section: string,
  listed: Record<string, number>,
  expected: (module: string) => number | undefined,
): ComparisonResult {
  const problems: string[] = [];
  let n = 0;
  for (const [mod, eps] of Object.entries(listed)) {
    const want = expected(mod);
    if (want === undefined) continue;
    n++;
    if (want !== eps) problems.push(`${mod}: meta.json ${eps}, config ${want}`);
  }
  return statusResult(section, "layernorm_eps", problems, n);
}

/**
 * Compare gradients (internal layout, by reference name) with a reference file.
 * @param section section name
 * @param store the model's parameters (for the layout conversion)
 * @param grads computed gradients
 * @param ref reference gradients (PyTorch layout)
 * @param spec gradient tolerance
 * @returns one result per reference gradient, then the name-set check
 */
export async function compareGrads(
  section: string,
  store: ParamStore,
  grads: Map<string, tf.Tensor>,
  ref: Map<string, HostTensor>,
  spec: ToleranceSpec,
): Promise<ComparisonResult[]> {
  const out: ComparisonResult[] = [];
  for (const [name, r] of ref) {
    const g = grads.get(name);
    if (g === undefined) {
      out.push(statusResult(section, `grad:${name}`, ["no gradient computed"], 1));
      continue;
    }
    out.push(compareClose(section, `grad:${name}`, await store.toTorchAsync(name, g), r, spec));
  }
  out.push(nameSetResult(section, "trainable_parameters", grads.keys(), ref.keys()));
  return out;
}

async function* runMtm(fx: Fixture): AsyncGenerator<ComparisonResult> {
  const cfg = mtmConfigFromFixture(fx);
  const io = await fx.file("mtm_io.safetensors");
  const params = await fx.file("mtm_params.safetensors");
  const refGrads = await fx.file("mtm_grads.safetensors");
  const ioTol = fx.tolerance("mtm_io_and_cls_io");
  const lossSpec = fx.tolerance("losses");
  const gradTol = fx.tolerance("gradients");
  const get = (name: string): HostTensor => {
    const t = io.get(name);
    if (t === undefined) throw new RangeError(`Fixture mtm_io.safetensors has no tensor "${name}"`);
    return t;
  };

  const model = new MtmModel(cfg, new Rng(fx.get<number>("seed")));
  const tensors: tf.Tensor[] = [];
  try {
    yield epsResult(SECTION, fx.get("mtm.layernorm_eps"), (mod) => {
      if (mod.startsWith("conversion_function") || mod.startsWith("reverse_transform")) {
        return undefined;
      }
      return mod === "mlm_layer.ln" ? cfg.mlmNormEps : cfg.normEps;
    });
    const load = model.params.loadStateDict(params);
    yield statusResult(SECTION, "load:mtm_params", [
      ...load.missing.map((n) => `missing ${n}`),
      ...load.unexpected.map((n) => `unexpected ${n}`),
      ...load.mismatchedShapes.map((n) => `mismatched ${n}`),
    ], model.params.names().length);
    const frozen = model.params.entries().filter((e) => !e.trainable).map((e) => e.name);
    const refFrozen = fx.get<string[]>("mtm.frozen_parameters").filter((n) => params.has(n));
    yield nameSetResult(SECTION, "frozen_parameters", frozen, refFrozen);

    const tokensHost = get("tokens");
    const [batch, side] = tokensHost.shape;
    const codes = tf.tensor3d(toInt32(tokensHost), [batch, side, side], "int32");
    tensors.push(codes);
    const maskRatio = fx.get<number>("mtm.mask_ratio");
    const plan = model.randomMasking(batch, { noise: toFloat32(get("noise")), maskRatio });

    yield compareExact(
      SECTION,
      "mask_ratio_f32",
      { shape: [], data: [Math.fround(maskRatio)] },
      get("mask_ratio_f32"),
    );
    yield compareExact(
      SECTION,
      "num_dropped_tokens",
      { shape: [], data: [plan.numDropped] },
      get("num_dropped_tokens"),
    );
    yield compareExact(
      SECTION,
      "num_masked_tokens",
      { shape: [], data: [plan.numMasked] },
      get("num_masked_tokens"),
    );
    const masks = referenceMasks(plan);
    const maskShape = [batch, 1 + plan.numPatches];
    yield compareExact(
      SECTION,
      "token_drop_mask",
      { shape: maskShape, data: masks.drop },
      get("token_drop_mask"),
    );
    yield compareExact(
      SECTION,
      "token_all_mask",
      { shape: maskShape, data: masks.all },
      get("token_all_mask"),
    );
    yield compareExact(SECTION, "gt_indices", {
      shape: [batch, side * side],
      data: toInt32(tokensHost),
    }, get("gt_indices"));

    // Forward (eval mode) with every activation recorded.
    const recorder = new Recorder();
    let captured: Map<string, Captured>;
    let logits: tf.Tensor3D;
    try {
      const latent = model.forwardEncoder(codes, plan, { record: recorder.record });
      tensors.push(latent);
      logits = model.forwardDecoder(latent, plan, { record: recorder.record });
      tensors.push(logits);
      captured = await recorder.read();
    } finally {
      recorder.dispose();
    }
    for (
      const name of [
        "act_token_emb",
        "act_patch_embed",
        "act_encoder_input",
        "latent",
        "act_decoder_embed",
        "act_decoder_input",
        "act_decoder_norm",
      ]
    ) {
      const got = captured.get(name);
      yield got === undefined
        ? statusResult(SECTION, name, ["the model did not record it"], 1)
        : compareClose(SECTION, name, got, get(name), ioTol);
    }
    yield compareClose(
      SECTION,
      "logits",
      await hostCopy(logits),
      get("logits"),
      ioTol,
    );

    const variants: [string, { labelSmoothing?: number; bceLoss?: boolean }][] = [
      ["s0", { labelSmoothing: 0, bceLoss: false }],
      ["s01", { labelSmoothing: 0.1, bceLoss: false }],
      ["bce", { bceLoss: true }],
    ];
    for (const [tag, opts] of variants) {
      const l = model.forwardLoss(logits, codes, plan, opts);
      try {
        const tokenRef = io.get(`loss_tokens_${tag}`);
        if (tokenRef !== undefined) {
          yield compareClose(
            SECTION,
            `loss_tokens_${tag}`,
            await hostCopy(l.tokenLoss),
            tokenRef,
            ioTol,
          );
        }
        const patchRef = io.get(`loss_patches_${tag}`);
        if (patchRef !== undefined) {
          yield compareClose(
            SECTION,
            `loss_patches_${tag}`,
            await hostCopy(l.patchLoss),
            patchRef,
            ioTol,
          );
        }
        const ref = fx.get<number>(`mtm.loss_${tag}`);
        const got = await scalarOf(l.loss);
        yield compareScalar(SECTION, `loss_${tag}`, got, ref, resolveTolerance(lossSpec, [ref]));
        yield compareClose(
          SECTION,
          `loss_${tag}:io`,
          { shape: [], data: [got] },
          get(`loss_${tag}`),
          lossSpec,
        );
      } finally {
        tf.dispose([l.loss, l.tokenLoss, l.patchLoss]);
      }
    }

    // Gradients of loss_s0 (eval mode, the same masking).
    const { value, grads } = model.params.valueAndGrads(() =>
      model.forward(codes, { plan, labelSmoothing: 0, bceLoss: false }).loss
    );
    try {
      yield compareScalar(
        SECTION,
        "loss_s0:grad_pass",
        await scalarOf(value),
        fx.get<number>("mtm.loss_s0"),
        resolveTolerance(lossSpec, [fx.get<number>("mtm.loss_s0")]),
      );
      for (const r of await compareGrads(SECTION, model.params, grads, refGrads, gradTol)) yield r;
    } finally {
      value.dispose();
      tf.dispose([...grads.values()]);
    }
  } finally {
    tf.dispose(tensors);
    model.dispose();
  }
}

/** The `mtm` parity section (see the module doc). */
export const mtmSection: ParitySection = {
  name: SECTION,
  description: "MTM model: masks, activations, logits, losses, gradients of loss_s0",
  run: runMtm,
};
