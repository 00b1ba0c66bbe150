/**
 * Parity of the token augmentations with the reference's recorded random draws
 * (`transforms_io.safetensors`, meta.json `transforms`), and of `convertToCodes`
 * (`tokenadapt_io.safetensors` c2c_input -> c2c_codes).
 *
 * Every transform is applied with the reference's parameters (its own draws are not
 * reproducible without torch/python RNGs); the draw rules themselves are checked on the
 * recorded draws where the fixture records them (RRC tries, swap constraints, synonym `u`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, toFloat32, toInt32 } from "../io/mod.ts";
import {
  CodeQuantizer,
  type CropBox,
  replaceSynonyms,
  resizedCrops,
  rrcTry,
  swapCodes,
  type SwapParams,
} from "../tokens/mod.ts";
import { colorAdapt, embNoise } from "../adapters/mod.ts";
import { compareClose, compareExact, type ComparisonResult } from "./compare.ts";
import type { Fixture } from "./fixture.ts";
import type { ParitySection } from "./sections.ts";

const FILE = "transforms_io.safetensors";

function intTensor(values: number[], shape = [values.length]): HostTensor {
  return { dtype: "int32", shape, data: Int32Array.from(values) };
}

function rows(t: HostTensor): number[][] {
  const d = toInt32(t), [n, k] = t.shape;
  return Array.from({ length: n }, (_, r) => Array.from(d.subarray(r * k, (r + 1) * k)));
}

function toTensor4d(t: HostTensor): tf.Tensor4D {
  if (t.shape.length !== 4) throw new TypeError(`Expected a 4-D fixture tensor, got [${t.shape}]`);
  return tf.tensor4d(toFloat32(t), t.shape as [number, number, number, number], "float32");
}

async function closeTo(
  section: string,
  quantity: string,
  got: tf.Tensor,
  ref: HostTensor,
  fixture: Fixture,
): Promise<ComparisonResult> {
  const data = await got.data();
  return compareClose(
    section,
    quantity,
    { shape: got.shape, data },
    ref,
    fixture.tolerance("transforms_io"),
  );
}

interface MetaTry {
  area_fraction: number;
  aspect_ratio: number;
  w: number;
  h: number;
  accepted: boolean;
  i?: number;
  j?: number;
}

async function runTransforms(fx: Fixture): Promise<ComparisonResult[]> {
  const S = "transforms";
  const out: ComparisonResult[] = [];
  const emb = await fx.tensor(FILE, "emb");
  const [B, , H, W] = emb.shape;
  const x = toTensor4d(emb);
  try {
    // --- RRC: the size rule on the recorded tries, then the crop+resize with the boxes
    const params = rows(await fx.tensor(FILE, "rrc_params"));
    const tries = fx.get<MetaTry[][]>("transforms.rrc.tries");
    const gotTries: number[] = [], refTries: number[] = [];
    tries.forEach((list, b) => {
      list.forEach((t) => {
        const r = rrcTry(H, W, t.area_fraction, t.aspect_ratio);
        gotTries.push(r.w, r.h, r.accepted ? 1 : 0);
        refTries.push(t.w, t.h, t.accepted ? 1 : 0);
      });
      const last = list[list.length - 1];
      gotTries.push(...(last.accepted ? [last.i!, last.j!, last.h, last.w] : [-1, -1, -1, -1]));
      refTries.push(...params[b]);
    });
    out.push(
      compareExact(
        S,
        "rrc_get_params_rule",
        { shape: [refTries.length], data: gotTries },
        intTensor(refTries),
      ),
    );
    const boxes: CropBox[] = params.map(([i, j, h, w]) => ({ i, j, h, w }));
    const size = fx.get<number>("transforms.rrc.size");
    const rrc = resizedCrops(x, boxes, size);
    try {
      out.push(await closeTo(S, "rrc_out", rrc, await fx.tensor(FILE, "rrc_out"), fx));
    } finally {
      rrc.dispose();
    }

    // --- ColorAdapt with the recorded permutation
    const caProb = fx.get<number>("transforms.coloradapt.prob");
    const caPerm = toInt32(await fx.tensor(FILE, "coloradapt_perm"));
    const ca = colorAdapt({ prob: caProb }).apply(x, {
      perm: caPerm,
      count: Math.floor(B * caProb),
    });
    try {
      out.push(await closeTo(S, "coloradapt_out", ca, await fx.tensor(FILE, "coloradapt_out"), fx));
    } finally {
      ca.dispose();
    }

    // --- Emb-Noise with the recorded normal draws and permutation
    const nProb = fx.get<number>("transforms.noise.prob");
    const noise = embNoise({
      prob: nProb,
      scale: fx.get<number>("transforms.noise.scale"),
      std: fx.get<number>("transforms.noise.std"),
    }).apply(x, {
      perm: toInt32(await fx.tensor(FILE, "noise_perm")),
      count: Math.floor(B * nProb),
      channel: toFloat32(await fx.tensor(FILE, "noise_channel")),
      pixel: toFloat32(await fx.tensor(FILE, "noise_pixel")),
    });
    try {
      out.push(await closeTo(S, "noise_out", noise, await fx.tensor(FILE, "noise_out"), fx));
    } finally {
      noise.dispose();
    }
  } finally {
    x.dispose();
  }

  // --- SwapCode: the draw constraints on the recorded parameters, then the swap
  const ids = await fx.tensor(FILE, "ids");
  const [N, Hc, Wc] = ids.shape;
  const grids = { dtype: "int32" as const, shape: [N, Hc, Wc], data: toInt32(ids) };
  const swapParams = rows(await fx.tensor(FILE, "swap_params")) as SwapParams;
  const [lo, hi] = fx.get<[number, number]>("transforms.swapcode.patch_scale");
  const overlapping = fx.get<boolean[]>("transforms.swapcode.overlapping");
  const rule: number[] = [], ruleRef: number[] = [];
  for (const [k, [ps, y0, x0, y1, x1]] of swapParams.entries()) {
    const inRange = (v: number, side: number) => v >= 0 && v <= side - ps - 1;
    rule.push(
      ps >= Math.floor(Math.min(Hc, Wc) * lo) && ps <= Math.floor(Math.min(Hc, Wc) * hi) ? 1 : 0,
      inRange(y0, Hc) && inRange(y1, Hc) && inRange(x0, Wc) && inRange(x1, Wc) ? 1 : 0,
      Math.sqrt((y1 - y0) ** 2 + (x1 - x0) ** 2) > ps ? 1 : 0,
      Math.abs(y1 - y0) < ps && Math.abs(x1 - x0) < ps ? 1 : 0,
    );
    ruleRef.push(1, 1, 1, overlapping[k] ? 1 : 0);
  }
  out.push(
    compareExact(S, "swap_params_rule", { shape: [rule.length], data: rule }, intTensor(ruleRef)),
  );
  const swapped = swapCodes({ patchScale: [lo, hi] }).apply(grids, swapParams);
  out.push(compareExact(S, "swap_out", swapped, await fx.tensor(FILE, "swap_out")));

  // --- ReplaceSynonym: u < prob <=> replaced, then the replacement with the recorded choices
  const synonyms = JSON.parse(
    await Deno.readTextFile(fx.path(fx.get<string>("transforms.replace_synonym.dict_file"))),
  );
  const prob = fx.get<number>("transforms.replace_synonym.prob");
  const top = fx.get<number>("transforms.replace_synonym.thres");
  const u = toFloat32(await fx.tensor(FILE, "synonym_u"));
  const choiceT = await fx.tensor(FILE, "synonym_choice");
  const choice = toInt32(choiceT);
  const replacedByU = Array.from(u, (v) => (v < prob ? 1 : 0));
  const replacedByChoice = Array.from(choice, (c) => (c >= 0 ? 1 : 0));
  out.push(
    compareExact(
      S,
      "synonym_draw_rule",
      { shape: choiceT.shape, data: replacedByU },
      intTensor(replacedByChoice, choiceT.shape),
    ),
  );
  const count = replacedByU.reduce<number>((a, b) => a + b, 0);
  out.push(
    compareExact(
      S,
      "synonym_num_replaced",
      { shape: [1], data: [count] },
      intTensor([fx.get<number>("transforms.replace_synonym.num_replaced")]),
    ),
  );
  const [Ns] = choiceT.shape;
  const firstGrids = {
    dtype: "int32" as const,
    shape: [Ns, Hc, Wc],
    data: grids.data.slice(0, Ns * Hc * Wc),
  };
  const syn = replaceSynonyms(synonyms, { prob, top }).apply(firstGrids, { choice });
  out.push(compareExact(S, "synonym_out", syn, await fx.tensor(FILE, "synonym_out")));
  return out;
}

async function runConvertToCodes(fx: Fixture): Promise<ComparisonResult[]> {
  const cb = await fx.tensor("codebook.safetensors", "codebook");
  const q = CodeQuantizer.from(cb);
  const x = toTensor4d(await fx.tensor("tokenadapt_io.safetensors", "c2c_input"));
  try {
    const codes = q.toCodes(x);
    try {
      const data = await codes.data();
      return [
        compareExact(
          "convert_to_codes",
          "c2c_codes",
          { shape: codes.shape, data },
          await fx.tensor("tokenadapt_io.safetensors", "c2c_codes"),
        ),
      ];
    } finally {
      codes.dispose();
    }
  } finally {
    x.dispose();
    q.dispose();
  }
}

/** The `transforms` section: RRC, ColorAdapt, Emb-Noise, SwapCode, ReplaceSynonym with recorded draws. */
export const transformsSection: ParitySection = {
  name: "transforms",
  description:
    "token augmentations with the reference's recorded draws: RRC (size rule + bicubic), ColorAdapt, Emb-Noise, SwapCode, ReplaceSynonym",
  run: runTransforms,
};

/** The `convert_to_codes` section: nearest codebook row by cosine, exact codes. */
export const convertToCodesSection: ParitySection = {
  name: "convert_to_codes",
  description: "convertToCodes(c2c_input, codebook) == c2c_codes exactly",
  run: runConvertToCodes,
};
