/**
 * Parity section `adamw`: the optimizer and its parameter groups against the reference.
 *
 * - One AdamW step on `mtm_params` + the STORED `mtm_grads` (lr, betas, eps and weight
 *   decay from meta.json `mtm.adamw`) against `mtm_after_adamw` (tolerance
 *   `tolerances.mtm_after_adamw`).
 * - The timm `add_weight_decay` grouping against meta.json `mtm.adamw.param_group`, and
 *   the parameters left out of the optimizer against `mtm.adamw.not_in_optimizer`.
 * - The layer-wise lr decay rule against meta.json `cls.param_groups_lrd.per_parameter`
 *   (layer id, lr scale, weight decay of every classifier parameter).
 *
 * The grouping rules run on this project's own models (`MtmModel`, `TokenClassifier` built
 * from the fixture's config), so their names, shapes and trainable flags are checked too;
 * the AdamW step reads parameters and gradients from the fixture files.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, toFloat32 } from "../io/mod.ts";
import {
  AdamW,
  addWeightDecay,
  paramGroupsLrd,
  type ParamInfo,
  type ParamSetting,
} from "../train/mod.ts";
import { MtmModel, TokenClassifier } from "../models/mod.ts";
import { Rng } from "../random/mod.ts";
import { classifierConfigFromFixture } from "./cls.ts";
import { compareClose, compareExact, type ComparisonResult } from "./compare.ts";
import { mtmConfigFromFixture } from "./mtm.ts";
import type { Fixture } from "./fixture.ts";
import type { ParitySection } from "./sections.ts";

const SECTION = "adamw";

function vector(values: number[], dtype: "float64" | "int32" = "float64"): HostTensor {
  return dtype === "float64"
    ? { dtype, shape: [values.length], data: new Float64Array(values) }
    : { dtype, shape: [values.length], data: new Int32Array(values) };
}

/** Compare two name sets exactly; the error names what differs. */
function compareNameSets(quantity: string, got: string[], ref: string[]): ComparisonResult {
  const g = new Set(got), r = new Set(ref);
  const missing = ref.filter((n) => !g.has(n));
  const extra = got.filter((n) => !r.has(n));
  const ok = missing.length === 0 && extra.length === 0;
  return {
    section: SECTION,
    quantity,
    shape: [ref.length],
    max_abs_err: missing.length + extra.length,
    max_rel_err: (missing.length + extra.length) / Math.max(ref.length, 1),
    worst_ratio: ok ? 0 : Infinity,
    tolerance: "exact",
    ok,
    ...(ok ? {} : {
      error: `missing: ${missing.join(", ") || "none"}; unexpected: ${extra.join(", ") || "none"}`,
    }),
  };
}

/** Compare our parameters' (reference-layout) shapes with the fixture's, by name. */
function compareShapes(
  quantity: string,
  infos: readonly ParamInfo[],
  ref: ReadonlyMap<string, HostTensor>,
): ComparisonResult {
  const bad = infos.filter((i) => {
    const t = ref.get(i.name);
    return t !== undefined &&
      (t.shape.length !== i.shape.length || t.shape.some((d, k) => d !== i.shape[k]));
  }).map((i) => `${i.name}: [${i.shape}] vs [${ref.get(i.name)!.shape}]`);
  return {
    section: SECTION,
    quantity,
    shape: [infos.length],
    max_abs_err: bad.length,
    max_rel_err: bad.length / Math.max(infos.length, 1),
    worst_ratio: bad.length === 0 ? 0 : Infinity,
    tolerance: "exact",
    ok: bad.length === 0,
    ...(bad.length ? { error: bad.join("; ") } : {}),
  };
}

async function* runAdamw(fx: Fixture): AsyncGenerator<ComparisonResult> {
  const params = await fx.file("mtm_params.safetensors");
  const grads = await fx.file("mtm_grads.safetensors");
  const after = await fx.file("mtm_after_adamw.safetensors");
  const tokenadapt = await fx.file("tokenadapt.safetensors");
  const hp = fx.get<{ lr: number; betas: [number, number]; eps: number; weight_decay: number }>(
    "mtm.adamw",
  );

  // --- grouping (timm add_weight_decay) of OUR MTM model (its trainable flags), plus the
  // frozen TokenAdapt that the reference model holds inside (kept apart here)
  const infos: ParamInfo[] = [];
  const mtm = new MtmModel(mtmConfigFromFixture(fx), new Rng(0));
  try {
    for (const e of mtm.params.entries()) {
      infos.push({ name: e.name, shape: e.shape, trainable: e.trainable });
    }
  } finally {
    mtm.dispose();
  }
  yield compareNameSets("mtm_model_parameters", infos.map((i) => i.name), [...params.keys()]);
  yield compareShapes("mtm_model_shapes", infos, params);
  for (const [name, t] of tokenadapt) infos.push({ name, shape: t.shape, trainable: false });
  const grouping = addWeightDecay(infos, hp.weight_decay);
  const refGroups = fx.get<Record<string, string>>("mtm.adamw.param_group");
  for (const group of ["decay", "no_decay"]) {
    yield compareNameSets(
      `param_group:${group}`,
      grouping.settings.filter((s) => s.group === group).map((s) => s.name),
      Object.entries(refGroups).filter(([, g]) => g === group).map(([n]) => n),
    );
  }
  yield compareNameSets(
    "not_in_optimizer",
    grouping.frozen,
    fx.get<string[]>("mtm.adamw.not_in_optimizer"),
  );

  // --- one AdamW step on the stored gradients
  const tol = fx.tolerance("mtm_after_adamw");
  const variables = new Map<string, tf.Variable>();
  const gradTensors = new Map<string, tf.Tensor>();
  let opt: AdamW | undefined;
  try {
    for (const s of grouping.settings) {
      const p = params.get(s.name);
      if (p === undefined) continue; // reported by mtm_model_parameters

      variables.set(
        s.name,
        tf.tidy(() => tf.variable(tf.tensor(toFloat32(p), p.shape, "float32"), true)),
      );
      const g = grads.get(s.name);
      if (g !== undefined) gradTensors.set(s.name, tf.tensor(toFloat32(g), g.shape, "float32"));
    }
    opt = new AdamW(
      grouping.settings.filter((s) => variables.has(s.name)).map((s: ParamSetting) => ({
        name: s.name,
        variable: variables.get(s.name)!,
        lrScale: s.lrScale,
        weightDecay: s.weightDecay,
      })),
      { betas: hp.betas, eps: hp.eps },
    );
    opt.step(gradTensors, hp.lr);
    const updated = new Set<string>();
    for (const [name, ref] of after) {
      const v = variables.get(name);
      if (v === undefined) {
        yield {
          section: SECTION,
          quantity: `after_adamw:${name}`,
          shape: ref.shape,
          max_abs_err: Infinity,
          max_rel_err: Infinity,
          worst_ratio: Infinity,
          tolerance: "exact",
          ok: false,
          error: "the grouping left this parameter out of the optimizer",
        };
        continue;
      }
      updated.add(name);
      yield compareClose(
        SECTION,
        `after_adamw:${name}`,
        {
          shape: v.shape,
          data: await v.data(),
        },
        ref,
        tol,
      );
    }
    yield compareNameSets("optimized_parameters", [...variables.keys()], [...after.keys()]);
  } finally {
    opt?.dispose();
    for (const v of variables.values()) v.dispose();
    for (const g of gradTensors.values()) g.dispose();
  }

  // --- layer-wise lr decay of OUR classifier (its parameters and trainable flags)
  const head = await fx.file("cls_head.safetensors");
  const clsConfig = classifierConfigFromFixture(fx);
  const cls = new TokenClassifier(clsConfig, new Rng(0));
  let clsInfos: ParamInfo[];
  try {
    clsInfos = cls.params.entries().map((e) => ({
      name: e.name,
      shape: e.shape,
      trainable: e.trainable,
    }));
  } finally {
    cls.dispose();
  }
  const clsRef = new Map([...params, ...head]);
  yield compareNameSets("cls_model_parameters", clsInfos.map((i) => i.name), [
    ...fx.get<string[]>("cls.parameters_from_mtm_params"),
    ...fx.get<string[]>("cls.parameters_from_cls_head"),
  ]);
  yield compareShapes("cls_model_shapes", clsInfos, clsRef);
  const depth = clsConfig.depth;
  const lrd = fx.get<{
    num_layers: number;
    per_parameter: Record<string, { lr_scale: number; weight_decay: number; layer_id: number }>;
  }>("cls.param_groups_lrd");
  yield compareExact(SECTION, "lrd:num_layers", { shape: [1], data: [depth + 1] }, {
    dtype: "int32",
    shape: [1],
    data: new Int32Array([lrd.num_layers]),
  });
  const call = fx.get<string>("cls.param_groups_lrd.call");
  const callValue = (key: string): number => {
    const m = new RegExp(`\\b${key}=([0-9.eE+-]+)`).exec(call);
    if (m === null) throw new SyntaxError(`Cannot find ${key}= in cls.param_groups_lrd.call`);
    return Number(m[1]);
  };
  const got = paramGroupsLrd(clsInfos, {
    weightDecay: callValue("weight_decay"),
    layerDecay: callValue("layer_decay"),
    numLayers: depth + 1,
  });
  const refNames = Object.keys(lrd.per_parameter);
  yield compareNameSets("lrd:parameters", got.settings.map((s) => s.name), refNames);
  const byName = new Map(got.settings.map((s) => [s.name, s]));
  const common = refNames.filter((n) => byName.has(n));
  yield compareExact(
    SECTION,
    "lrd:layer_id",
    { shape: [common.length], data: common.map((n) => byName.get(n)!.layerId!) },
    vector(common.map((n) => lrd.per_parameter[n].layer_id), "int32"),
  );
  // float64 values computed the same way as in Python: compared exactly
  yield compareExact(
    SECTION,
    "lrd:lr_scale",
    { shape: [common.length], data: common.map((n) => byName.get(n)!.lrScale) },
    vector(common.map((n) => lrd.per_parameter[n].lr_scale)),
  );
  yield compareExact(
    SECTION,
    "lrd:weight_decay",
    { shape: [common.length], data: common.map((n) => byName.get(n)!.weightDecay) },
    vector(common.map((n) => lrd.per_parameter[n].weight_decay)),
  );
}

/** The `adamw` parity section (see the module doc). */
export const adamwSection: ParitySection = {
  name: SECTION,
  description: "AdamW step on stored gradients vs mtm_after_adamw; weight-decay groups; " +
    "layer-wise lr decay scales",
  run: (fixture: Fixture) => runAdamw(fixture),
};
