/**
 * `deno task bench:train [--backend wasm,cpu] [--model mtm,cls,demo-mtm,demo-cls] [--workers 1,2]
 *   [--batch 32] [--steps 5] [--warmup 1] [--profile] [--record] [--vs-torch]`
 *
 * Training-step throughput of the fixture-sized models (DESIGN.md's timing reference:
 * 28x28 tokens, encoder 192 x 4 (3 heads), MTM decoder 128 x 2 (4 heads), classifier
 * with 1000 classes) at batch 32: one step = forward + backward + an AdamW update
 * (lib/train's AdamW; MTM: betas (0.9, 0.95), weight decay 0.05 by timm's grouping;
 * classifier: soft-target CE, default betas, weight decay 0.05 on >= 2-D weights),
 * training mode (dropout, drop path, masking). Prints steps/s and samples/s per
 * backend, model and worker count (`--workers 2`: lib/train's `DataParallel`, the batch
 * split between the main thread and one Deno Worker; the masking plan drawn in the main
 * thread); `--profile` adds the kernels that take the most time in one single-thread
 * step; `--record` appends a section to bench/results.md. CPU time is the whole
 * process's (all threads), next to wall time and the load average. `demo-mtm` / `demo-cls`
 * are the models and batch size of `deno task demo` (configs/*_demo.json). `--vs-torch` runs
 * bench/torch_step.py (a plain PyTorch model of the same shapes, training mode, AdamW, on all
 * cores or `--torch-threads`; Debian python3-torch at
 * /usr/bin/python3, SEITPP_PYTHON overrides) right after ours for each model and prints both
 * ms/step, the ratio and GFLOP/s (the step's matMul FLOPs, 3 x forward, per wall second).
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import * as tf from "@tensorflow/tfjs";
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import {
  classifierSmall,
  MtmModel,
  mtmSmall,
  type ParamStore,
  resolveClassifierConfig,
  type ResolvedClassifierConfig,
  type ResolvedMtmConfig,
  resolveMtmConfig,
  TokenClassifier,
} from "@lib/models";
import { Rng } from "@lib/random";
import { AdamW, addWeightDecay, DataParallel, softTargetCrossEntropy } from "@lib/train";

const args = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "wasm,cpu" },
    model: { type: "string", default: "mtm,cls" },
    workers: { type: "string", default: "1" },
    batch: { type: "string", default: "32" },
    steps: { type: "string", default: "5" },
    "cpu-steps": { type: "string", default: "1" },
    warmup: { type: "string", default: "1" },
    profile: { type: "boolean", default: false },
    record: { type: "boolean", default: false },
    "vs-torch": { type: "boolean", default: false },
    "torch-threads": { type: "string" },
  },
});
const batch = Number(args.values.batch);
const warmup = Number(args.values.warmup);

/** A benchmarked model: which kind, its resolved config and its batch size. */
interface ModelSpec {
  kind: "mtm" | "cls";
  config: ResolvedMtmConfig | ResolvedClassifierConfig;
  batch: number;
}

/** `demo-mtm` / `demo-cls`: the models and batch size of `deno task demo` (configs/*_demo.json). */
function demoSpec(file: string, kind: "mtm" | "cls"): ModelSpec {
  const json = JSON.parse(Deno.readTextFileSync(new URL(`../configs/${file}`, import.meta.url)));
  return {
    kind,
    config: kind === "mtm" ? resolveMtmConfig(json.model) : resolveClassifierConfig(json.model),
    batch: json.batchSize,
  };
}

function modelSpec(name: string): ModelSpec {
  switch (name) {
    case "mtm":
      return { kind: "mtm", config: mtmSmall(), batch };
    case "cls":
      return { kind: "cls", config: classifierSmall(), batch };
    case "demo-mtm":
      return demoSpec("pretrain_demo.json", "mtm");
    case "demo-cls":
      return demoSpec("finetune_demo.json", "cls");
    default:
      throw new RangeError(
        `Unknown --model "${name}": expected mtm, cls, demo-mtm or demo-cls`,
      );
  }
}

/** Multiply-add FLOPs (2 per MAC) of a ViT block's matMuls over `t` tokens of width `d`. */
function blockFlops(t: number, d: number, mlpRatio: number): number {
  return 2 * t * d * d * (3 + 1 + 2 * mlpRatio) + 4 * t * t * d;
}

/**
 * The matMul FLOPs of one training step (forward x 3: the backward pass costs about two
 * forwards), per the shapes both implementations share; the basis of GFLOP/s.
 */
function stepFlops(spec: ModelSpec): number {
  const c = spec.config;
  const l = (c.gridSide / c.patchSize) ** 2;
  const patchIn = c.patchSize * c.patchSize * c.tokenDim;
  let f = 2 * l * patchIn * c.embedDim;
  if (spec.kind === "mtm") {
    const m = c as ResolvedMtmConfig;
    const kept = l - Math.ceil(l * m.dropRatio);
    f += m.depth * blockFlops(1 + kept, m.embedDim, m.mlpRatio);
    f += 2 * (1 + kept) * m.embedDim * m.decoderEmbedDim;
    f += m.decoderDepth * blockFlops(1 + l, m.decoderEmbedDim, m.mlpRatio);
    f += 2 * l * m.decoderEmbedDim * patchIn + 2 * m.gridSide ** 2 * m.tokenDim * m.codebookSize;
  } else {
    const k = c as ResolvedClassifierConfig;
    f += k.depth * blockFlops(1 + l, k.embedDim, k.mlpRatio) + 2 * k.embedDim * k.numClasses;
  }
  return 3 * f * spec.batch;
}

interface TorchRow {
  msPerStep: number;
  cpuMsPerStep: number;
  threads: number;
  torch: string;
}

/** Runs bench/torch_step.py on the same shapes (Debian python3-torch; SEITPP_PYTHON overrides). */
async function torchStep(spec: ModelSpec, steps: number, threads: number): Promise<TorchRow> {
  const python = Deno.env.get("SEITPP_PYTHON") ?? "/usr/bin/python3";
  const out = await new Deno.Command(python, {
    args: [
      new URL("./torch_step.py", import.meta.url).pathname,
      "--kind",
      spec.kind,
      "--config",
      JSON.stringify(spec.config),
      "--batch",
      String(spec.batch),
      "--steps",
      String(steps),
      "--warmup",
      String(warmup),
      "--threads",
      String(threads),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success) {
    throw new Error(
      `bench/torch_step.py failed (${python}, exit ${out.code}): ` +
        new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ") +
        " (needs PyTorch: apt-get install python3-torch)",
    );
  }
  const r = JSON.parse(text);
  return {
    msPerStep: r.ms_per_step,
    cpuMsPerStep: r.cpu_ms_per_step,
    threads: r.threads,
    torch: r.torch,
  };
}

interface Row {
  backend: string;
  model: string;
  workers: number;
  loadBefore: string;
  msPerStep: number;
  cpuMsPerStep: number;
  forwardMs: number | null;
  steps: number;
  profile: string[];
  batch: number;
  flops: number;
  torch?: TorchRow;
}

function optimizerFor(params: ParamStore, betas: [number, number]): AdamW {
  const groups = addWeightDecay(params.entries(), 0.05);
  return new AdamW(
    groups.settings.map((s) => ({
      name: s.name,
      variable: params.get(s.name),
      weightDecay: s.weightDecay,
    })),
    { betas },
  );
}

interface Bench {
  step: () => void | Promise<void>;
  forward: () => Promise<void>;
  /** Tensors alive in the workers (W > 1), for the leak check. */
  workerTensors: () => Promise<number[]>;
  dispose: () => Promise<void>;
}

async function mtmBench(workers: number, spec: ModelSpec): Promise<Bench> {
  const batch = spec.batch;
  const model = new MtmModel(spec.config as ResolvedMtmConfig, new Rng(0));
  const c = model.config;
  const rng = new Rng(1);
  const codes = tf.tensor3d(
    Int32Array.from({ length: batch * c.gridSide ** 2 }, () => rng.int(0, c.codebookSize)),
    [batch, c.gridSide, c.gridSide],
    "int32",
  );
  const opt = optimizerFor(model.params, [0.9, 0.95]);
  const pool = workers > 1 ? await DataParallel.start(model, { workers }) : null;
  const host = (await codes.data()).slice() as Int32Array;
  let steps = 0;
  return {
    step: pool === null
      ? async () => {
        const { value, grads } = model.params.valueAndGrads(() =>
          model.forward(codes, { rng, training: true }).loss
        );
        opt.step(grads, 1.5e-4);
        await value.data(); // async: webgpu cannot read synchronously under Deno
        tf.dispose([value, ...grads.values()]);
      }
      : async () => {
        const plan = model.randomMasking(batch, rng);
        const { grads } = await pool.gradients({ codes: host, batch, plan }, {
          rng: rng.fork("dropout"),
          step: steps++,
        });
        opt.step(grads, 1.5e-4);
        tf.dispose([...grads.values()]);
      },
    forward: async () => {
      const o = model.forward(codes, { rng });
      await o.loss.data();
      tf.dispose([o.loss, o.logits, o.mask]);
    },
    workerTensors: async () => (await pool?.workerTensors()) ?? [],
    dispose: async () => {
      await pool?.close();
      codes.dispose();
      opt.dispose();
      model.dispose();
    },
  };
}

async function clsBench(workers: number, spec: ModelSpec): Promise<Bench> {
  const batch = spec.batch;
  const model = new TokenClassifier(spec.config as ResolvedClassifierConfig, new Rng(0));
  const c = model.config;
  const rng = new Rng(1);
  const codes = tf.tensor3d(
    Int32Array.from({ length: batch * c.gridSide ** 2 }, () => rng.int(0, c.codebookSize)),
    [batch, c.gridSide, c.gridSide],
    "int32",
  );
  const soft = new Float32Array(batch * c.numClasses).fill(0.1 / c.numClasses);
  for (let b = 0; b < batch; b++) soft[b * c.numClasses + rng.int(0, c.numClasses)] += 0.9;
  const targets = tf.tensor2d(soft, [batch, c.numClasses]);
  const opt = optimizerFor(model.params, [0.9, 0.999]);
  const pool = workers > 1 ? await DataParallel.start(model, { workers }) : null;
  const host = (await codes.data()).slice() as Int32Array;
  let steps = 0;
  return {
    step: pool === null
      ? async () => {
        const { value, grads } = model.params.valueAndGrads(() =>
          softTargetCrossEntropy(model.forward(codes, { rng, training: true }), targets)
        );
        opt.step(grads, 1e-3);
        await value.data(); // async: webgpu cannot read synchronously under Deno
        tf.dispose([value, ...grads.values()]);
      }
      : async () => {
        const { grads } = await pool.gradients({ codes: host, batch, targets: soft }, {
          rng: rng.fork(`dropout ${steps}`),
          step: steps++,
        });
        opt.step(grads, 1e-3);
        tf.dispose([...grads.values()]);
      },
    forward: async () => {
      const l = model.forward(codes);
      await l.data();
      l.dispose();
    },
    workerTensors: async () => (await pool?.workerTensors()) ?? [],
    dispose: async () => {
      await pool?.close();
      tf.dispose([codes, targets]);
      opt.dispose();
      model.dispose();
    },
  };
}

async function profileStep(b: Bench): Promise<string[]> {
  const info = await tf.profile(async () => await b.step());
  const byKernel = new Map<string, { ms: number; n: number }>();
  let total = 0;
  for (const k of info.kernels) {
    // Composite ops (`*__op`, custom gradients) contain kernels that are listed too.
    if (k.name.endsWith("__op") || k.name === "unnamed scope") continue;
    const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    total += ms;
    const key = k.name === "BatchMatMul" || k.name === "_FusedMatMul"
      ? `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join("x")}`
      : k.name;
    const e = byKernel.get(key) ?? { ms: 0, n: 0 };
    e.ms += ms;
    e.n++;
    byKernel.set(key, e);
  }
  const cats = new Map<string, number>();
  for (const [key, e] of byKernel) {
    const cat = key.startsWith("BatchMatMul") || key.startsWith("_FusedMatMul")
      ? "matMul"
      : key === "Transpose"
      ? "transpose"
      : key;
    cats.set(cat, (cats.get(cat) ?? 0) + e.ms);
  }
  const summary = [...cats.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6)
    .map(([k, ms]) => `${k} ${(100 * ms / total).toFixed(0)}%`).join(", ");
  return [
    `kernels ${total.toFixed(0)} ms: ${summary}`,
    ...[...byKernel.entries()]
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, Number(Deno.env.get("BENCH_TOP") ?? 12))
      .map(([name, e]) =>
        `${name} ${e.ms.toFixed(0)} ms (${e.n} calls, ${(100 * e.ms / total).toFixed(0)}%)`
      ),
  ];
}

async function run(backend: string, model: string, workers: number): Promise<Row> {
  const loadBefore = await loadAverage();
  const spec = modelSpec(model);
  const b = spec.kind === "mtm" ? await mtmBench(workers, spec) : await clsBench(workers, spec);
  const steps = backend === "cpu" ? Number(args.values["cpu-steps"]) : Number(args.values.steps);
  try {
    for (let i = 0; i < warmup; i++) await b.step();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < steps; i++) await b.step();
    const c1 = process.cpuUsage(c0);
    const msPerStep = (performance.now() - t0) / steps;
    const cpuMsPerStep = (c1.user + c1.system) / 1000 / steps;
    let forwardMs: number | null = null;
    if (workers === 1) {
      const f0 = performance.now();
      await b.forward();
      forwardMs = performance.now() - f0;
    }
    const before = tf.memory().numTensors;
    const workersBefore = await b.workerTensors();
    await b.step();
    if (tf.memory().numTensors !== before) {
      throw new Error(`${model} step leaked ${tf.memory().numTensors - before} tensors`);
    }
    const workersAfter = await b.workerTensors();
    if (workersAfter.some((n, i) => n !== workersBefore[i])) {
      throw new Error(
        `${model} step leaked tensors in a worker: ${workersBefore} -> ${workersAfter}`,
      );
    }
    const profile = args.values.profile && workers === 1 ? await profileStep(b) : [];
    return {
      backend,
      model,
      workers,
      loadBefore,
      msPerStep,
      cpuMsPerStep,
      forwardMs,
      steps,
      profile,
      batch: spec.batch,
      flops: stepFlops(spec),
    };
  } finally {
    await b.dispose();
  }
}

async function loadAverage(): Promise<string> {
  const t = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return t.split(" ")[0] || "unknown";
}

const loadBefore = await loadAverage();
const rows: Row[] = [];
const backends: string[] = [];
/**
 * Threads PyTorch gets: --torch-threads, else all logical cores (as many as ours uses with its
 * default BLAS threads, or with `--workers N` and SEITPP_BLAS_THREADS = cores / N).
 */
const threads = Number(args.values["torch-threads"] ?? 0) || navigator.hardwareConcurrency;
const torchRows = new Map<string, TorchRow>();
const gflops = (flops: number, ms: number) => flops / ms / 1e6;
for (const backend of args.values.backend.split(",")) {
  const info = await initBackend({ backend: backend as BackendRequest });
  backends.push(describeBackend(info).replace(/^backend: /, ""));
  console.error(describeBackend(info));
  for (const model of args.values.model.split(",")) {
    for (const workers of args.values.workers.split(",").map(Number)) {
      const r = await run(info.name, model, workers);
      rows.push(r);
      console.log(
        `${r.backend} ${r.model} B=${r.batch} W=${r.workers}: ${r.msPerStep.toFixed(0)} ms/step ` +
          `(process CPU ${r.cpuMsPerStep.toFixed(0)} ms), ${
            (1000 / r.msPerStep).toFixed(3)
          } steps/s, ` +
          `${(r.batch * 1000 / r.msPerStep).toFixed(1)} samples/s, ` +
          `${gflops(r.flops, r.msPerStep).toFixed(1)} GFLOP/s (${
            r.forwardMs === null ? "" : `forward only ${r.forwardMs.toFixed(0)} ms; `
          }${r.steps} timed steps; load before ${r.loadBefore})`,
      );
      for (const line of r.profile) console.log(`  ${line}`);
      if (args.values["vs-torch"]) {
        // PyTorch right after ours, same shapes and thread count; once per model.
        let t = torchRows.get(model);
        if (t === undefined) {
          t = await torchStep(modelSpec(model), Number(args.values.steps), threads);
          torchRows.set(model, t);
        }
        r.torch = t;
        console.log(
          `torch ${t.torch} ${r.model} B=${r.batch} (${t.threads} threads): ${
            t.msPerStep.toFixed(0)
          } ms/step (process CPU ${t.cpuMsPerStep.toFixed(0)} ms), ${
            gflops(r.flops, t.msPerStep).toFixed(1)
          } GFLOP/s; ours / torch: wall ${(r.msPerStep / t.msPerStep).toFixed(2)}x, CPU ${
            (r.cpuMsPerStep / t.cpuMsPerStep).toFixed(2)
          }x`,
        );
      }
    }
  }
}

if (args.values.record) {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo").catch(() =>
    ""
  )).match(/model name\s*:\s*(.*)/)?.[1] ??
    "unknown CPU";
  const torchVersion = [...torchRows.values()][0]?.torch;
  const lines = [
    "",
    `## train step${torchVersion ? " vs PyTorch" : ""} (bench/train_step.ts), ${
      new Date().toISOString().slice(0, 19)
    }Z`,
    "",
    `- machine: ${cpu}, ${navigator.hardwareConcurrency} logical cores, Deno ${Deno.version.deno}`,
    `- command: \`deno task bench:train ${Deno.args.join(" ")}\``,
    `- backends: ${backends.join("; ")}`,
    ...(torchVersion
      ? [
        `- PyTorch ${torchVersion} (bench/torch_step.py: same shapes, training mode, AdamW), ` +
        `${threads} threads, run right after ours for each model`,
      ]
      : []),
    "- mtm / cls: 28x28 tokens, encoder 192 x 4 (3 heads), MTM decoder 128 x 2 (4 heads), 1000 " +
    "classes; demo-mtm / demo-cls: configs/*_demo.json (8x8 tokens, 96 x 3); one step = forward + " +
    "backward + AdamW update, training mode; GFLOP/s = matMul FLOPs of the step (3 x forward) / wall time",
    `- load average before / after (other jobs may share the cores): ${loadBefore} / ${await loadAverage()}`,
    "",
    "| backend | model | batch | workers | load before | wall ms/step | CPU ms/step | GFLOP/s | PyTorch wall ms/step | PyTorch CPU ms/step | PyTorch GFLOP/s | wall / PyTorch | CPU / PyTorch |",
    "| ------- | ----- | ----- | ------- | ----------- | ------------ | ----------- | ------- | -------------------- | ------------------- | --------------- | -------------- | ------------- |",
    ...rows.map((r) =>
      `| ${r.backend} | ${r.model} | ${r.batch} | ${r.workers} | ${r.loadBefore} | ${
        r.msPerStep.toFixed(0)
      } | ${r.cpuMsPerStep.toFixed(0)} | ${gflops(r.flops, r.msPerStep).toFixed(1)} | ` +
      (r.torch
        ? `${r.torch.msPerStep.toFixed(0)} | ${r.torch.cpuMsPerStep.toFixed(0)} | ${
          gflops(r.flops, r.torch.msPerStep).toFixed(1)
        } | ${(r.msPerStep / r.torch.msPerStep).toFixed(2)}x | ${
          (r.cpuMsPerStep / r.torch.cpuMsPerStep).toFixed(2)
        }x |`
        : "- | - | - | - | - |")
    ),
  ];
  for (const r of rows.filter((r) => r.profile.length > 0)) {
    lines.push("", `Top kernels, ${r.backend} ${r.model} (one step, tf.profile):`, "");
    for (const l of r.profile) lines.push(`- ${l}`);
  }
  await Deno.writeTextFile(new URL("./results.md", import.meta.url), lines.join("\n") + "\n", {
    append: true,
  });
  // Keep the file as `deno fmt` wants it (the quality gate checks markdown too).
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", new URL("./results.md", import.meta.url).pathname],
    stdout: "null",
    stderr: "null",
  }).output();
  console.error("appended to bench/results.md");
}
