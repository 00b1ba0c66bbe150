/**
 * `deno task tokenadapt:identity --run <finetune run dir> [--records N] [--out <json>]`:
 * what the augmentations do to the codes, and TokenAdapt judged by what a classifier sees.
 *
 * 1. The fraction of codes changed by each code-preserving augmentation of the step applied
 *    to every sample of N test records and re-quantized: Emb-Noise at the authors' scale
 *    (1.0) and at the grid's (0.18), ColorAdapt, and TokenAdapt with the identity transform
 *    (the `identity-tokenadapt` arm's TokenAdapt half: f, no geometric change, g).
 * 2. A trained classifier's test top-1 on clean tokens vs on the same tokens passed through
 *    identity TokenAdapt: what g's reconstruction error costs before any augmentation.
 *
 * @module
 */
import { dirname, join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { colorAdapt, embNoise, TokenAdapt } from "@lib/adapters";
import { TokenClassifier } from "@lib/models";
import { Rng } from "@lib/random";
import { CodeQuantizer, loadCodebook, openTokenDataset } from "@lib/tokens";
import { augmentStepForArm, createAugmentStep, readModelWeights } from "@lib/train";
import { reportUserError } from "./_errors.ts";
import { callerPath } from "./_paths.ts";

const USAGE = `Usage: deno task tokenadapt:identity --run <finetune run dir> [options]

  --run <dir>          a finished fine-tuning run on data/fmnist8 (its config.json, model.safetensors)
  --tokenadapt <file>  TokenAdapt weights (default results/tokenadapt/fmnist8/tokenadapt.safetensors)
  --records N          test records (default 2000)
  --backend <name>     default wasm
  --out <file>         write the numbers as JSON`;

interface Args {
  run: string;
  tokenadapt: string;
  records: number;
  backend: string;
  out: string | null;
}

function parse(argv: string[]): Args | null {
  const a: Args = {
    run: "",
    tokenadapt: "results/tokenadapt/fmnist8/tokenadapt.safetensors",
    records: 2000,
    backend: "wasm",
    out: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const [k, v0] = argv[i].split("=", 2);
    if (k === "-h" || k === "--help") return null;
    const v = v0 ?? argv[++i];
    if (v === undefined) throw new SyntaxError(`Option ${k} needs a value`);
    if (k === "--run") a.run = callerPath(v);
    else if (k === "--tokenadapt") a.tokenadapt = callerPath(v);
    else if (k === "--records") a.records = Number(v);
    else if (k === "--backend") a.backend = v;
    else if (k === "--out") a.out = callerPath(v);
    else throw new SyntaxError(`Unknown option ${k}`);
  }
  if (a.run === "") throw new SyntaxError("--run <finetune run dir> is required");
  if (!Number.isInteger(a.records) || a.records < 2) {
    throw new SyntaxError(`--records ${a.records}: expected an integer >= 2`);
  }
  return a;
}

async function main(a: Args) {
  console.error(describeBackend(await initBackend({ backend: a.backend as BackendRequest })));
  const config = JSON.parse(await Deno.readTextFile(join(a.run, "config.json")));
  const K = config.model.codebookSize as number;
  const testPath = config.data.test as string;
  const codebookPath = config.codebook ?? join(dirname(config.data.train), "codebook.safetensors");
  const quantizer = CodeQuantizer.from(await loadCodebook(codebookPath, { size: K }));
  const ta = (await TokenAdapt.load(a.tokenadapt)).model;
  const model = new TokenClassifier(config.model, new Rng(0));
  const { tensors } = await readModelWeights(join(a.run, "model.safetensors"));
  model.params.loadStateDict(tensors, { strict: true });
  const test = await openTokenDataset(testPath, { codebookSize: K });
  const N = Math.min(a.records, test.length);
  const m = config.model.gridSide as number;
  // the identity-TokenAdapt arm's TokenAdapt half, alone: no colour op, no mixing, full crops
  const identity = createAugmentStep(
    {
      ...augmentStepForArm({ size: m, numClasses: null }, "identity-tokenadapt"),
      noise: false,
      rrcScale: [1, 1],
      rrcRatio: [1, 1],
      baseMix: null,
      tokenAdaptMix: null,
    },
    { quantizer, tokenAdapt: ta },
  );
  const ops: Record<string, (x: tf.Tensor4D, rng: Rng) => tf.Tensor4D> = {
    "Emb-Noise (scale/std 1.0, the authors')": (x, rng) => {
      const t = embNoise({ prob: 1, scale: 1, std: 1 });
      return t.apply(x, t.draw(x, rng));
    },
    "Emb-Noise (scale/std 0.18, the grids')": (x, rng) => {
      const t = embNoise({ prob: 1, scale: 0.18, std: 0.18 });
      return t.apply(x, t.draw(x, rng));
    },
    "ColorAdapt": (x, rng) => {
      const t = colorAdapt({ prob: 1 });
      return t.apply(x, t.draw(x, rng));
    },
  };
  const changed: Record<string, number> = {};
  for (const k of Object.keys(ops)) changed[k] = 0;
  changed["TokenAdapt, identity transform (f -> g)"] = 0;
  let clean = 0, through = 0, total = 0;
  const rng = new Rng(0);
  const B = 32;
  for (let s = 0; s + B <= N; s += B) {
    const idx = Array.from({ length: B }, (_, i) => s + i);
    const labels = test.labelsOf(idx);
    const codes = test.readBatchTensor(idx);
    const ref = await codes.data();
    const diff = async (t: tf.Tensor) => {
      const d = await t.data();
      let c = 0;
      for (let i = 0; i < d.length; i++) if (d[i] !== ref[i]) c++;
      return c;
    };
    for (const [k, f] of Object.entries(ops)) {
      const out = tf.tidy(() => quantizer.toCodes(f(quantizer.embed(codes), rng)));
      changed[k] += await diff(out);
      out.dispose();
    }
    // identity TokenAdapt on every sample: run the step on [x, x] and keep the second half
    const doubled = tf.concat([codes, codes]) as tf.Tensor3D;
    const o = identity.run({ codes: doubled, labels: null, epoch: 0, step: 0 }, rng);
    const taCodes = o.codes.slice([B], [B]) as tf.Tensor3D;
    const baseCodes = o.codes.slice([0], [B]);
    if ((await diff(baseCodes)) !== 0) throw new Error("the full-crop base half changed codes");
    changed["TokenAdapt, identity transform (f -> g)"] += await diff(taCodes);
    const top1 = async (x: tf.Tensor3D) => {
      const pred = tf.tidy(() => model.forward(x, { training: false }).argMax(1));
      const p = await pred.data();
      pred.dispose();
      let c = 0;
      for (let i = 0; i < B; i++) if (p[i] === labels[i]) c++;
      return c;
    };
    clean += await top1(codes);
    through += await top1(taCodes);
    total += B;
    tf.dispose([codes, doubled, o.codes, taCodes, baseCodes]);
  }
  const perCode = total * m * m;
  const result = {
    run: a.run,
    tokenAdapt: a.tokenadapt,
    records: total,
    codesChanged: Object.fromEntries(
      Object.entries(changed).map(([k, v]) => [k, v / perCode]),
    ),
    top1Clean: clean / total,
    top1IdentityTokenAdapt: through / total,
  };
  console.log(JSON.stringify(result, null, 2));
  if (a.out !== null) await Deno.writeTextFile(a.out, JSON.stringify(result, null, 2) + "\n");
  model.dispose();
  ta.dispose();
  quantizer.dispose();
}

if (import.meta.main) {
  let code = 0;
  try {
    const a = parse(Deno.args);
    if (a === null) console.log(USAGE);
    else await main(a);
  } catch (e) {
    if (e instanceof SyntaxError) {
      console.error(`error: ${e.message}\n\n${USAGE}`);
      code = 2;
    } else code = reportUserError(e);
  }
  Deno.exit(code);
}
