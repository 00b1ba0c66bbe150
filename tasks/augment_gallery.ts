/**
 * `deno task augment:gallery [--tokenizer=DIR] [--data=TOKENS] [--tokenadapt=WEIGHTS]
 *  [--rows=8] [--first=0] [--seed=0] [--out=PNG] [--backend wasm]`
 *
 * Decodes a few records of the embedded dataset with the tokenizer's decoder: the stored
 * tokens and the tokens after each augmentation of the SeiT++ training step (flip, token
 * RRC, an affine chain applied naively vs through TokenAdapt, TokenAdapt's round trip,
 * ColorAdapt, Emb-Noise, CutMix, Mixup in TokenAdapt space, and the whole section-6 step),
 * tiled into one labelled PNG. Prints what each column shows.
 *
 * @module
 */
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import * as tf from "@tensorflow/tfjs";
import { encodePng, writeFileAtomic } from "@lib/io";
import { disposeColumns, galleryColumns, renderGallery, TokenAdapt } from "@lib/adapters";
import { Rng } from "@lib/random";
import { CodeQuantizer, openTokenDataset } from "@lib/tokens";
import { loadDecoder } from "@lib/tokenizer";
import { applyOverrides, augmentStepFinetune, createAugmentStep, parseTaskArgs } from "@lib/train";
import { callerTaskArgs } from "./_paths.ts";

const USAGE = "usage: deno task augment:gallery [--tokenizer=DIR] [--data=TOKENS] " +
  "[--tokenadapt=WEIGHTS|''] [--rows=N] [--first=N] [--seed=N] [--out=PNG] [--scale=N] " +
  "[--backend wasm|cpu|webgpu|auto]";

function fail(message: string, status: number): never {
  console.error(`augment:gallery: ${message}`);
  Deno.exit(status);
}

async function main(args: string[]): Promise<void> {
  let cfg = {
    tokenizer: "data/fmnist8",
    data: "data/fmnist8/fmnist-test-token.data.bin.gz",
    tokenadapt: "results/tokenadapt/fmnist8/tokenadapt.safetensors",
    rows: 8,
    first: 0,
    seed: 0,
    scale: 3,
    out: "results/tokenadapt/gallery.png",
  };
  let backend = "wasm";
  try {
    const a = callerTaskArgs(parseTaskArgs(args));
    if (a.help) {
      console.log(USAGE);
      return;
    }
    if (a.data !== undefined) cfg.data = a.data;
    if (a.out !== undefined) cfg.out = a.out;
    cfg = applyOverrides(cfg, a.overrides, { integers: ["rows", "first", "seed", "scale"] });
    if (!(cfg.rows >= 4 && cfg.rows % 4 === 0)) {
      throw new RangeError(
        `--rows=${cfg.rows}: expected a multiple of 4 (two halves, each mixed in pairs)`,
      );
    }
    backend = a.backend ?? "wasm";
  } catch (e) {
    if (e instanceof SyntaxError || e instanceof TypeError || e instanceof RangeError) {
      fail(`${e.message}\n${USAGE}`, 2);
    }
    throw e;
  }
  const info = await initBackend({ backend: backend as BackendRequest });
  console.error(describeBackend(info));
  const decoder = await loadDecoder(cfg.tokenizer);
  const quantizer = CodeQuantizer.from(decoder.codebook);
  const ds = await openTokenDataset(cfg.data);
  if (cfg.first + cfg.rows > ds.length) {
    fail(
      `"${cfg.data}" has ${ds.length} records, asked for ${cfg.first}..${cfg.first + cfg.rows - 1}`,
      2,
    );
  }
  const n = ds.gridSide;
  const ta = cfg.tokenadapt === "" ? null : (await TokenAdapt.load(cfg.tokenadapt)).model;
  const indices = Array.from({ length: cfg.rows }, (_, i) => cfg.first + i);
  const codes = ds.readBatchTensor(indices);
  const rng = new Rng(cfg.seed);
  const columns = galleryColumns(codes, { quantizer, tokenAdapt: ta, rng: rng.fork("columns") });
  try {
    // the whole section-6 step (fine-tuning settings; first half base, second half TokenAdapt)
    const labels = ds.labels === null ? new Int32Array(cfg.rows) : ds.labelsOf(indices);
    const classes = ds.labels === null ? 1 : Math.max(...ds.labels) + 1;
    const step = createAugmentStep(
      { ...augmentStepFinetune(classes, n), tokenAdapt: ta !== null },
      { quantizer, tokenAdapt: ta },
    );
    const out = step.run({ codes, labels, epoch: 0, step: 0 }, rng.fork("step"));
    out.targets?.dispose();
    columns.push({
      label: "SECTION 6\nSTEP",
      description:
        `the whole training step (colour: ${out.record.color}; rows 1-${out.record.baseSamples} RRC + CutMix, the rest TokenAdapt)`,
      codes: out.codes,
    });
    const image = renderGallery(columns, (c) => decoder.decode(c), { scale: cfg.scale });
    await Deno.mkdir(cfg.out.replace(/\/[^/]*$/, "") || ".", { recursive: true });
    await writeFileAtomic(cfg.out, encodePng(image));
    console.log(`records ${indices.join(", ")} of ${cfg.data}; columns:`);
    columns.forEach((c, k) =>
      console.log(`  ${k + 1}. ${c.label.replace("\n", " ")}: ${c.description}`)
    );
    console.log(`wrote ${cfg.out} (${image.shape[1]}x${image.shape[0]})`);
  } finally {
    disposeColumns(columns);
    tf.dispose(codes);
    ta?.dispose();
    quantizer.dispose();
    decoder.dispose();
  }
}

if (import.meta.main) await main(Deno.args);
