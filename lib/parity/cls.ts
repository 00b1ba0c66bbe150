/**
 * Parity section `cls`: the token classifier against the reference fixtures.
 *
 * Builds the classifier from meta.json (`config.cls` sizes, `config.num_classes`,
 * `config.mtm_fixed` geometry, `cls.layernorm_eps`), loads the encoder from
 * `mtm_params.safetensors` with {@linkcode TokenClassifier.loadFromMtm} and checks the
 * reported missing / unexpected names against meta.json `cls.finetune_load` (minus the
 * TokenAdapt names, which this model does not hold), loads the head from
 * `cls_head.safetensors`, and compares every activation in `cls_io`, the logits, the
 * three losses and the gradient of `loss_soft_target` for every trainable parameter
 * against `cls_grads`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, toFloat32, toInt32 } from "../io/mod.ts";
import {
  resolveClassifierConfig,
  type ResolvedClassifierConfig,
  TokenClassifier,
} from "../models/mod.ts";
import { Rng } from "../random/mod.ts";
import { crossEntropy, labelSmoothingCrossEntropy, softTargetCrossEntropy } from "../train/mod.ts";
import { compareClose, compareScalar, type ComparisonResult, resolveTolerance } from "./compare.ts";
import type { Fixture } from "./fixture.ts";
import {
  type Captured,
  compareGrads,
  epsResult,
  hostCopy,
  nameSetResult,
  Recorder,
  scalarOf,
  statusResult,
} from "./mtm.ts";
import type { ParitySection } from "./sections.ts";

const SECTION = "cls";

function num(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(`Fixture meta.json: ${what} = ${JSON.stringify(v)} is not a number`);
  }
  return v;
}

/**
 * The classifier configuration a fixture was made with (eval mode: dropouts unused).
 * Global average pooling unless meta.json `cls.global_pool` says otherwise.
 *
 * @param fx the fixture
 * @returns the resolved config
 * @throws {RangeError | TypeError} when meta.json lacks a value or has a wrong one
 */
export function classifierConfigFromFixture(fx: Fixture): ResolvedClassifierConfig {
  const c = fx.get<Record<string, unknown>>("config.cls");
  const f = fx.get<Record<string, unknown>>("config.mtm_fixed");
  const eps = fx.get<Record<string, number>>("cls.layernorm_eps");
  let pool = true;
  try {
    const g = fx.get<unknown>("cls.global_pool");
    pool = g === true || (typeof g === "string" && g.includes("mean"));
  } catch {
    // absent: global pooling, the fine-tuning default
  }
  return resolveClassifierConfig({
    gridSide: num(f.img_size, "config.mtm_fixed.img_size"),
    patchSize: num(f.patch_size, "config.mtm_fixed.patch_size"),
    codebookSize: num(f.codebook_size, "config.mtm_fixed.codebook_size"),
    tokenDim: num(f.token_embed_dim ?? f.in_chans, "config.mtm_fixed.token_embed_dim"),
    numClasses: num(fx.get("config.num_classes"), "config.num_classes"),
    embedDim: num(c.embed_dim, "config.cls.embed_dim"),
    depth: num(c.depth, "config.cls.depth"),
    numHeads: num(c.num_heads, "config.cls.num_heads"),
    mlpRatio: num(c.mlp_ratio ?? f.mlp_ratio, "config.mtm_fixed.mlp_ratio"),
    qkvBias: (c.qkv_bias ?? f.qkv_bias) !== false,
    normEps: num(eps["norm"] ?? f.norm_eps, "cls.layernorm_eps.norm"),
    globalPool: pool,
  });
}

async function* runCls(fx: Fixture): AsyncGenerator<ComparisonResult> {
  const cfg = classifierConfigFromFixture(fx);
  const io = await fx.file("cls_io.safetensors");
  const mtmParams = await fx.file("mtm_params.safetensors");
  const head = await fx.file("cls_head.safetensors");
  const refGrads = await fx.file("cls_grads.safetensors");
  const ioTol = fx.tolerance("mtm_io_and_cls_io");
  const lossSpec = fx.tolerance("losses");
  const gradTol = fx.tolerance("gradients");
  const get = (name: string): HostTensor => {
    const t = io.get(name);
    if (t === undefined) throw new RangeError(`Fixture cls_io.safetensors has no tensor "${name}"`);
    return t;
  };

  const model = new TokenClassifier(cfg, new Rng(fx.get<number>("seed")));
  const tensors: tf.Tensor[] = [];
  try {
    yield epsResult(
      SECTION,
      fx.get("cls.layernorm_eps"),
      (
        mod,
      ) => (mod.startsWith("conversion_function") || mod.startsWith("reverse_transform")
        ? undefined
        : cfg.normEps),
    );
    // The fine-tuning load: what the reference reports, minus TokenAdapt (not held here).
    const tokenAdapt = new Set(fx.get<string[]>("cls.parameters_from_tokenadapt"));
    const report = model.loadFromMtm(mtmParams);
    const ref = fx.get<{ missing_keys: string[]; unexpected_keys: string[] }>("cls.finetune_load");
    yield nameSetResult(
      SECTION,
      "finetune_load:missing",
      report.missing,
      ref.missing_keys.filter((n) => !tokenAdapt.has(n)),
    );
    yield nameSetResult(
      SECTION,
      "finetune_load:unexpected",
      report.unexpected,
      ref.unexpected_keys,
    );
    yield statusResult(
      SECTION,
      "finetune_load:mismatched",
      report.mismatchedShapes,
      report.loaded.length,
    );
    yield nameSetResult(
      SECTION,
      "parameters_from_mtm_params",
      report.loaded,
      fx.get<string[]>("cls.parameters_from_mtm_params"),
    );
    const headLoad = model.params.loadStateDict(head, { select: (n) => head.has(n) });
    yield statusResult(SECTION, "load:cls_head", [
      ...headLoad.unexpected.map((n) => `unexpected ${n}`),
      ...headLoad.mismatchedShapes.map((n) => `mismatched ${n}`),
    ], head.size);
    yield nameSetResult(
      SECTION,
      "all_parameters_loaded",
      [...report.loaded, ...headLoad.loaded],
      model.params.names(),
    );

    const tokensHost = get("tokens");
    const [batch, side] = tokensHost.shape;
    const codes = tf.tensor3d(toInt32(tokensHost), [batch, side, side], "int32");
    const labels = tf.tensor1d(toInt32(get("labels")), "int32");
    const soft = tf.tensor2d(
      toFloat32(get("soft_targets")),
      get("soft_targets").shape as [number, number],
    );
    tensors.push(codes, labels, soft);

    const recorder = new Recorder();
    let captured: Map<string, Captured>;
    let logits: tf.Tensor2D;
    try {
      logits = model.forward(codes, { record: recorder.record });
      tensors.push(logits);
      captured = await recorder.read();
    } finally {
      recorder.dispose();
    }
    for (const name of ["act_patch_embed", "pooled_before_norm", "features"]) {
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

    const smoothing = fx.get<number>("cls.soft_target_smoothing");
    const losses: [string, () => tf.Scalar][] = [
      ["loss_soft_target", () => softTargetCrossEntropy(logits, soft)],
      ["loss_label_smoothing", () => labelSmoothingCrossEntropy(logits, labels, smoothing)],
      ["loss_cross_entropy", () => crossEntropy(logits, labels)],
    ];
    for (const [name, f] of losses) {
      const l = f();
      const got = await scalarOf(l);
      l.dispose();
      const refValue = fx.get<number>(`cls.${name}`);
      yield compareScalar(SECTION, name, got, refValue, resolveTolerance(lossSpec, [refValue]));
      yield compareClose(SECTION, `${name}:io`, { shape: [], data: [got] }, get(name), lossSpec);
    }

    const { value, grads } = model.params.valueAndGrads(() =>
      softTargetCrossEntropy(model.forward(codes), soft)
    );
    try {
      const refValue = fx.get<number>("cls.loss_soft_target");
      yield compareScalar(
        SECTION,
        "loss_soft_target:grad_pass",
        await scalarOf(value),
        refValue,
        resolveTolerance(lossSpec, [refValue]),
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

/** The `cls` parity section (see the module doc). */
export const clsSection: ParitySection = {
  name: SECTION,
  description: "Token classifier: fine-tune load report, activations, logits, losses, gradients",
  run: runCls,
};
