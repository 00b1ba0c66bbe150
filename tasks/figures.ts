/**
 * `deno task figures [--runs dir] [--out dir] [--baseline dir]`: the paper's figures and tables
 * from grid run folders only (see `writePaperFigures` of `@lib/report`): accuracy vs storage,
 * the ablation table and figure, loss and accuracy curves, the augmentation gallery of the step
 * the runs used, as SVG + PNG, CSV + markdown, and one standalone `report.html`; with
 * `--baseline` (the run folders of the grid these runs are a variant of) also
 * `variant_effects.{csv,md}` and `variant_mtm_effects.{csv,md}` (the base's MTM arms against
 * the variant's from-scratch baselines). The same folders give byte-identical SVG and CSV.
 *
 * @module
 */
import { dirname } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { reportUserError } from "./_errors.ts";
import { disposeColumns, galleryColumns, renderGallery, TokenAdapt } from "@lib/adapters";
import { encodePng } from "@lib/io";
import { Rng } from "@lib/random";
import { loadGridRuns, type ReportImage, writePaperFigures } from "@lib/report";
import { loadDecoder } from "@lib/tokenizer";
import { CodeQuantizer, loadCodebook, openTokenDataset } from "@lib/tokens";
import { createAugmentStep, storedRunStep } from "@lib/train";
import { callerPath } from "./_paths.ts";

const USAGE = `Usage: deno task figures [options]

Figures and tables of a grid (deno task ablate) from its run folders only.

Options:
  --runs <dir>        the run folders (default results/grid/runs)
  --out <dir>         where figures go (default results/grid/figures)
  --formats <list>    static formats, comma-separated: svg,png (default) or svg or png
  --no-html           skip report.html
  --finished          only the finished runs (with metrics.json): a grid still running
  --baseline <dir>    the run folders of the base grid when --runs is a variant of it (one
                      setting changed): also writes variant_effects.{csv,md}, per (arm, budget)
                      the variant's mean top-1 minus the base's with Welch's 95% interval,
                      and variant_mtm_effects.{csv,md}: the base's MTM arms against the
                      variant's from-scratch baselines
  --no-gallery        skip the augmentation gallery (it needs the tokenizer and TokenAdapt
                      files that the runs name)
  --backend <name>    tensor backend of the gallery (default wasm)
  -h, --help          this text`;

interface FigArgs {
  runs: string;
  out: string;
  formats: ("svg" | "png")[];
  html: boolean;
  gallery: boolean;
  finished: boolean;
  baseline: string | undefined;
  backend: string;
  help: boolean;
}

function parseArgs(argv: readonly string[]): FigArgs {
  const a: FigArgs = {
    runs: "results/grid/runs",
    out: "results/grid/figures",
    formats: ["svg", "png"],
    html: true,
    gallery: true,
    finished: false,
    baseline: undefined,
    backend: "wasm",
    help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") a.help = true;
    else if (arg === "--no-html") a.html = false;
    else if (arg === "--no-gallery") a.gallery = false;
    else if (arg === "--finished") a.finished = true;
    else if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (!["runs", "out", "formats", "backend", "baseline"].includes(name)) {
        throw new SyntaxError(`Unknown option --${name}`);
      }
      const v = eq < 0 ? argv[++i] : arg.slice(eq + 1);
      if (v === undefined || v === "") throw new SyntaxError(`Option --${name} needs a value`);
      if (name === "formats") {
        const list = v.split(",").filter((x) => x !== "");
        if (!list.every((f) => f === "svg" || f === "png")) {
          throw new SyntaxError(`Option --formats takes svg and/or png, got ${JSON.stringify(v)}`);
        }
        a.formats = list as ("svg" | "png")[];
      } else if (name === "runs") a.runs = callerPath(v);
      else if (name === "out") a.out = callerPath(v);
      else if (name === "baseline") a.baseline = callerPath(v);
      else a.backend = v;
    } else {
      throw new SyntaxError(`Unexpected argument ${JSON.stringify(arg)}`);
    }
  }
  return a;
}

/**
 * The augmentation gallery of the step a grid's fine-tuning runs used (the full SeiT++ arm
 * when present): test records 0-7 decoded after each augmentation, and the whole step.
 */
async function gallery(
  runsDir: string,
  backend: string,
  finishedOnly: boolean,
): Promise<ReportImage | null> {
  // runs imported from the authors' scripts (torch:import) name no local tokenizer files
  const runs = (await loadGridRuns(runsDir)).filter((r) =>
    !(r as { imported?: boolean }).imported && (!finishedOnly || r.finished)
  );
  const pick = runs.find((r) => r.kind === "finetune" && r.augment === "seitpp") ??
    runs.find((r) => r.kind === "finetune");
  if (pick === undefined) return null;
  const c = JSON.parse(await Deno.readTextFile(`${pick.dir}/config.json`));
  const info = await initBackend({ backend: backend as BackendRequest });
  console.error(describeBackend(info));
  const decoder = await loadDecoder(dirname(c.codebook));
  const K = c.model.codebookSize;
  const quantizer = CodeQuantizer.from(await loadCodebook(c.codebook, { size: K }));
  const ta = c.tokenAdaptWeights === null
    ? null
    : (await TokenAdapt.load(c.tokenAdaptWeights)).model;
  const ds = await openTokenDataset(c.data.test, { codebookSize: K });
  const idx = [0, 1, 2, 3, 4, 5, 6, 7];
  const codes = ds.readBatchTensor(idx);
  const rng = new Rng(0);
  const columns = galleryColumns(codes, { quantizer, tokenAdapt: ta, rng: rng.fork("columns") });
  try {
    const stepConfig = storedRunStep(c)!;
    const step = createAugmentStep(stepConfig, { quantizer, tokenAdapt: ta });
    const out = step.run({ codes, labels: ds.labelsOf(idx), epoch: 0, step: 0 }, rng.fork("step"));
    out.targets?.dispose();
    columns.push({
      label: "SECTION 6\nSTEP",
      description: `the training step of ${pick.id}`,
      codes: out.codes,
    });
    const image = renderGallery(columns, (x) => decoder.decode(x), { scale: 3 });
    return {
      file: "gallery.png",
      png: encodePng(image),
      caption: `Augmentation gallery: test records 0-7 of ${c.data.test}, decoded; columns: ` +
        columns.map((col) => col.label.replace("\n", " ").toLowerCase()).join(", ") +
        ` (the last: the whole training step of ${pick.id}, Emb-Noise scale/std ${stepConfig.noiseScale}/${stepConfig.noiseStd})`,
    };
  } finally {
    disposeColumns(columns);
    tf.dispose(codes);
    ta?.dispose();
    quantizer.dispose();
    decoder.dispose();
  }
}

if (import.meta.main) {
  let a: FigArgs;
  try {
    a = parseArgs(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (a.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  try {
    const images = a.gallery
      ? [await gallery(a.runs, a.backend, a.finished)].filter((x) => x !== null)
      : [];
    const r = await writePaperFigures({
      runs: a.runs,
      out: a.out,
      formats: a.formats,
      html: a.html,
      images: images as ReportImage[],
      finishedOnly: a.finished,
      baseline: a.baseline,
    });
    console.log(`${r.runs} runs -> ${r.files.length} files in ${a.out}:`);
    for (const f of r.files) console.log(`  ${f}`);
  } catch (e) {
    Deno.exit(reportUserError(e, ["ChromiumError"]));
  }
}
