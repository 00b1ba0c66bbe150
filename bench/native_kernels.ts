/**
 * `deno task bench:kernels [--reps 5] [--out FILE]`
 *
 * The fused wasm kernels (lib/backend/native_ops.ts) at the shapes of the bench:train
 * classifier and MTM steps, each timed on the C kernels (OpenMP, lib/backend/native/) and on
 * the JS loops in the same process, one after the other, plus the BLAS calls alone inside
 * attention (to show what part of it the fused passes are). Prints a table; `--out` writes it
 * with machine, date, command and load to a Markdown file.
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import {
  activeBlas,
  activeNativeKernels,
  describeBackend,
  initBackend,
  nativeAttention,
  nativeAttentionGrad,
  nativeGelu,
  nativeLayerNorm,
  nativeLayerNormGrad,
  nativeSoftmaxCrossEntropy,
  nativeSoftmaxCrossEntropyGrad,
  setNativeKernels,
} from "@lib/backend";
import { Rng } from "@lib/random";

const USAGE = "usage: deno task bench:kernels [--reps N] [--out FILE]";

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
  } catch {
    return "?";
  }
}

function cpuModel(): string {
  try {
    return /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? "?";
  } catch {
    return Deno.build.arch;
  }
}

/** Median wall ms of `reps` runs of `f` (after one warm-up), each result disposed. */
function time(reps: number, f: () => tf.TensorContainer): number {
  tf.dispose(f());
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const r = f();
    ms.push(performance.now() - t0);
    tf.dispose(r);
  }
  ms.sort((a, b) => a - b);
  return ms[Math.floor(ms.length / 2)];
}

interface Case {
  name: string;
  run: () => tf.TensorContainer;
}

function cases(rng: Rng): { cases: Case[]; attentionBlas: Case[]; dispose: () => void } {
  const t = (shape: number[], scale = 1) =>
    tf.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1)).map((v) => v * scale), shape);
  const out: Case[] = [];
  const blasOnly: Case[] = [];
  const keep: tf.Tensor[] = [];
  const hold = <T extends tf.Tensor>(x: T) => (keep.push(x), x);
  // classifier: 32 x 197 tokens, 192 wide, 3 heads, MLP 768; MTM encoder: 32 x 118 tokens
  for (const [label, rows] of [["cls", 32 * 197], ["mtm", 32 * 118]] as const) {
    const seq = rows / 32;
    const h = hold(t([rows, 768]));
    out.push({ name: `${label} GELU [${rows},768]`, run: () => nativeGelu(h) });
    const x = hold(t([rows, 192])) as tf.Tensor2D;
    const g = hold(t([192])) as tf.Tensor1D;
    const b = hold(t([192])) as tf.Tensor1D;
    out.push({
      name: `${label} LayerNorm [${rows},192]`,
      run: () => nativeLayerNorm(x, g, b, 1e-6),
    });
    const [, xhat, rstd] = nativeLayerNorm(x, g, b, 1e-6);
    hold(xhat);
    hold(rstd);
    out.push({
      name: `${label} LayerNorm grad [${rows},192]`,
      run: () => nativeLayerNormGrad(x, xhat, rstd, g),
    });
    const qkv = hold(t([rows, 576], 0.5)) as tf.Tensor2D;
    const mask = hold(
      tf.tensor3d(
        rng.uniformArray(32 * 3 * seq * seq).map((u) => (u < 0.1 ? 0 : 1 / 0.9)),
        [32 * 3, seq, seq],
      ),
    );
    const scale = 64 ** -0.5;
    for (const m of [undefined, mask]) {
      const tag = m === undefined ? "" : " + dropout";
      out.push({
        name: `${label} attention B=32 N=${seq} H=3${tag}`,
        run: () => nativeAttention(qkv, 32, seq, 3, scale, m),
      });
      const [o, p] = nativeAttention(qkv, 32, seq, 3, scale, m);
      hold(o);
      hold(p);
      out.push({
        name: `${label} attention grad B=32 N=${seq} H=3${tag}`,
        run: () => nativeAttentionGrad(o as tf.Tensor2D, qkv, p, 32, seq, 3, scale, m),
      });
    }
    // the BLAS calls of attention forward + backward alone (6 GEMMs per block)
    const blas = activeBlas();
    if (blas !== undefined) {
      const n = seq;
      const a = rng.normalArray(n * 64 * 3);
      const s1 = new Float32Array(n * n);
      const s2 = new Float32Array(n * n);
      const o = new Float32Array(n * 64);
      blasOnly.push({
        name: `${label} attention BLAS calls only (fwd 2 + bwd 4 per block, 96 blocks)`,
        run: () => {
          for (let i = 0; i < 96; i++) {
            blas.sgemm(false, true, n, n, 64, 1, a, 192, a.subarray(64), 192, 0, s1, n);
            blas.sgemm(false, false, n, 64, n, 1, s1, n, a.subarray(128), 192, 0, o, 64);
            blas.sgemm(true, false, n, 64, n, 1, s1, n, o, 64, 0, a.subarray(128), 192);
            blas.sgemm(false, true, n, n, 64, 1, o, 64, a.subarray(128), 192, 0, s2, n);
            blas.sgemm(false, false, n, 64, n, 1, s2, n, a.subarray(64), 192, 0, o, 64);
            blas.sgemm(true, false, n, 64, n, 1, s2, n, a, 192, 0, o, 64);
          }
          return [];
        },
      });
    }
  }
  for (const [rows, k] of [[32 * 666, 1024], [32, 1000]] as const) {
    const logits = hold(t([rows, k], 3)) as tf.Tensor2D;
    const targets = hold(
      tf.tensor1d(Int32Array.from({ length: rows }, () => rng.int(0, k)), "int32"),
    ) as tf.Tensor1D;
    out.push({
      name: `softmax cross-entropy [${rows},${k}]`,
      run: () => nativeSoftmaxCrossEntropy(logits, targets, 0.1),
    });
    const [, probs] = nativeSoftmaxCrossEntropy(logits, targets, 0.1);
    hold(probs);
    const dy = hold(tf.ones([rows])) as tf.Tensor1D;
    out.push({
      name: `softmax cross-entropy grad [${rows},${k}]`,
      run: () => nativeSoftmaxCrossEntropyGrad(dy, probs, targets, 0.1),
    });
  }
  return { cases: out, attentionBlas: blasOnly, dispose: () => tf.dispose(keep) };
}

async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        reps: { type: "string", default: "5" },
        out: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    console.error(`bench:kernels: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) {
    console.error(`bench:kernels: --reps must be a whole number >= 1, got "${values.reps}"`);
    return 2;
  }
  const loadBefore = loadAverage();
  const info = await initBackend({ backend: "wasm" });
  const native = activeNativeKernels();
  if (native === undefined || activeBlas() === undefined) {
    console.error(`bench:kernels: needs the BLAS and the C kernels: ${describeBackend(info)}`);
    return 1;
  }
  const { cases: all, attentionBlas, dispose } = cases(new Rng(11));
  const rows: string[] = [];
  for (const c of all) {
    setNativeKernels(native);
    const cMs = time(reps, c.run);
    setNativeKernels(undefined);
    const jsMs = time(reps, c.run);
    setNativeKernels(native);
    rows.push(
      `| ${c.name} | ${cMs.toFixed(1)} | ${jsMs.toFixed(1)} | ${(jsMs / cMs).toFixed(1)}x |`,
    );
    console.error(rows[rows.length - 1]);
  }
  for (const c of attentionBlas) {
    const ms = time(reps, c.run);
    rows.push(`| ${c.name} | ${ms.toFixed(1)} | | |`);
    console.error(rows[rows.length - 1]);
  }
  dispose();
  const text = [
    `## fused kernels: C (OpenMP) vs JS (bench/native_kernels.ts), ${new Date().toISOString()}`,
    "",
    `- machine: ${cpuModel()}, ${navigator.hardwareConcurrency} logical cores, Deno ${Deno.version.deno}`,
    `- command: \`deno task bench:kernels ${args.join(" ")}\``,
    `- ${describeBackend(info)}`,
    `- median of ${reps} runs after one warm-up; load average before / after: ${loadBefore} / ${loadAverage()}`,
    "",
    "| kernel | C ms | JS ms | JS / C |",
    "| ------ | ---- | ----- | ------ |",
    ...rows,
    "",
  ].join("\n");
  console.log(text);
  if (values.out !== undefined) await Deno.writeTextFile(values.out, text);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
