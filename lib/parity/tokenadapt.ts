/**
 * Parity section `tokenadapt`: the authors' TokenAdapt weights loaded by name from
 * `tokenadapt.ckpt` (the safe torch reader) and run through f, the deterministic geometric
 * stand-in (flip, bicubic 64 -> 56) and g, against `tokenadapt_io.safetensors`
 * (tolerance `tolerances.tokenadapt_io`; codes exact).
 *
 * - `state_dict`: every expected key present, none unexpected, shapes equal (exact).
 * - `de_pos_embedding` / `en_pos_embedding`: the fixed tables equal this project's 2-D
 *   sin-cos construction (first half of the channels = column) within 1e-5.
 * - `input_emb32`: `embedCodes(input_ids32, codebook)` (exact).
 * - `conversion`: f(input_emb32).
 * - `transformed56`: bicubic 56x56 of the horizontally flipped conversion (ours, chained).
 * - `inversion_logits`, `inversion_codes`: g on the fixture's transformed56 (isolates g).
 * - `inversion_codes_chained`: g on our own transformed56 (the whole path, exact codes).
 * - `roundtrip_codes`: convertToCodes(embedCodes(inversion codes)).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, toFloat32 } from "../io/mod.ts";
import { CodeQuantizer, resizeBicubic } from "../tokens/mod.ts";
import {
  CONVERSION_TABLE_KEY,
  INVERSION_TABLE_KEY,
  sinCosTable2d,
  TokenAdapt,
  tokenAdaptOfficial,
} from "../adapters/mod.ts";
import { compareClose, compareExact, type ComparisonResult } from "./compare.ts";
import type { Fixture } from "./fixture.ts";
import type { ParitySection } from "./sections.ts";

const S = "tokenadapt";
const IO = "tokenadapt_io.safetensors";

async function data(t: tf.Tensor): Promise<{ shape: number[]; data: ArrayLike<number> }> {
  return { shape: t.shape, data: await t.data() };
}

function tensor4d(t: HostTensor): tf.Tensor4D {
  return tf.tensor4d(toFloat32(t), t.shape as [number, number, number, number]);
}

async function runTokenAdapt(fx: Fixture): Promise<ComparisonResult[]> {
  const out: ComparisonResult[] = [];
  const tol = fx.tolerance("tokenadapt_io");
  const config = tokenAdaptOfficial();
  const { model, report } = await TokenAdapt.load(fx.path("tokenadapt.ckpt"), config, {
    strict: false,
  });
  const bad = report.missing.length + report.unexpected.length + report.mismatched.length;
  out.push({
    section: S,
    quantity: "state_dict",
    shape: [model.expectedKeys().size],
    max_abs_err: bad,
    max_rel_err: bad / model.expectedKeys().size,
    worst_ratio: bad === 0 ? 0 : Infinity,
    tolerance: "exact",
    ok: bad === 0,
    ...(bad === 0 ? {} : {
      error: `missing: ${report.missing.join(", ") || "none"}; unexpected: ${
        report.unexpected.join(", ") || "none"
      }; mis-shaped: ${report.mismatched.map((m) => m.key).join(", ") || "none"}`,
    }),
  });
  const weights = await fx.file("tokenadapt.safetensors");
  const tableTol = { rtol: 0, atol: 1e-5, atolScale: "none" as const };
  for (
    const [key, grid] of [[CONVERSION_TABLE_KEY, config.inputGrid], [
      INVERSION_TABLE_KEY,
      config.outputGrid,
    ]] as const
  ) {
    const ref = weights.get(key)!;
    const ours = sinCosTable2d(grid, grid, config.width);
    out.push(
      compareClose(S, key.split(".").pop()!, { shape: ref.shape, data: ours }, ref, tableTol),
    );
  }

  const cb = await fx.tensor("codebook.safetensors", "codebook");
  const q = CodeQuantizer.from(cb);
  const owned: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  try {
    const ids = await fx.tensor(IO, "input_ids32");
    const emb = keep(q.embed(ids));
    out.push(compareExact(S, "input_emb32", await data(emb), await fx.tensor(IO, "input_emb32")));
    const conv = keep(model.convert(keep(tensor4d(await fx.tensor(IO, "input_emb32")))));
    out.push(
      compareClose(S, "conversion", await data(conv), await fx.tensor(IO, "conversion"), tol),
    );
    const t56 = keep(tf.tidy(() => resizeBicubic(tf.reverse(conv, 3), [56, 56])));
    out.push(
      compareClose(S, "transformed56", await data(t56), await fx.tensor(IO, "transformed56"), tol),
    );

    const refT56 = keep(tensor4d(await fx.tensor(IO, "transformed56")));
    const logits = keep(model.invertLogits(refT56));
    out.push(
      compareClose(
        S,
        "inversion_logits",
        await data(logits),
        await fx.tensor(IO, "inversion_logits"),
        tol,
      ),
    );
    const m = config.outputGrid;
    const codes = keep(
      tf.tidy(() => logits.argMax(2).reshape([logits.shape[0], m, m]) as tf.Tensor3D),
    );
    out.push(
      compareExact(S, "inversion_codes", await data(codes), await fx.tensor(IO, "inversion_codes")),
    );
    const chained = keep(model.invert(t56));
    out.push(
      compareExact(
        S,
        "inversion_codes_chained",
        await data(chained),
        await fx.tensor(IO, "inversion_codes"),
      ),
    );
    const round = keep(tf.tidy(() => q.toCodes(q.embed(codes))));
    out.push(
      compareExact(S, "roundtrip_codes", await data(round), await fx.tensor(IO, "roundtrip_codes")),
    );
  } finally {
    tf.dispose(owned);
    q.dispose();
    model.dispose();
  }
  return out;
}

/** The `tokenadapt` section: official weights through f, flip + bicubic, g; codes exact. */
export const tokenAdaptSection: ParitySection = {
  name: "tokenadapt",
  description:
    "official TokenAdapt weights (tokenadapt.ckpt, by name): f, flip + bicubic 64->56, g logits and codes, round trip",
  run: runTokenAdapt,
};
