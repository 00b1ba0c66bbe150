/**
 * End-to-end checks of the training tasks as a user runs them (spawned `deno run`
 * processes): pretrain -> finetune, the demo, resume through the CLI, and config errors.
 * Run with `deno task test:e2e` (not part of the fast `deno task test`).
 */
import assert from "node:assert/strict";
import { Rng } from "@lib/random";
import { writeTokenDataset } from "@lib/tokens";
import { readRunLog } from "@lib/train";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const K = 16, C = 4, n = 10;

/** Train and test splits of a small learnable dataset in the official format. */
async function dataset(dir: string): Promise<{ train: string; test: string }> {
  const out = {
    train: `${dir}/syn-train-token.data.bin.gz`,
    test: `${dir}/syn-test-token.data.bin.gz`,
  };
  for (const [path, N, seed] of [[out.train, 96, 1], [out.test, 48, 2]] as const) {
    const rng = new Rng(seed);
    const codes = new Int32Array(N * n * n), labels = new Int32Array(N);
    for (let i = 0; i < N; i++) {
      labels[i] = rng.int(0, C);
      for (let j = 0; j < n * n; j++) {
        codes[i * n * n + j] = rng.uniform() < 0.7 ? labels[i] * 4 + rng.int(0, 4) : rng.int(0, K);
      }
    }
    await writeTokenDataset(path, codes, { gridSide: n, codebookSize: K, labels });
  }
  return out;
}

/** Overrides that shrink the demo models to the synthetic data (K = 16, 8x8 crop of 10x10). */
const TINY_MODEL = [
  "--model.gridSide=8",
  "--model.patchSize=2",
  "--model.codebookSize=16",
  "--model.tokenDim=8",
  "--model.embedDim=32",
  "--model.depth=1",
  "--model.numHeads=2",
];
const TINY_DECODER = [
  "--model.decoderEmbedDim=32",
  "--model.decoderDepth=1",
  "--model.decoderNumHeads=2",
];

async function task(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

function runFolder(stdout: string): string {
  const m = /^run folder: (.+)$/m.exec(stdout);
  assert.ok(m, `no run folder in:\n${stdout}`);
  return m[1].trim();
}

Deno.test("pretrain -> finetune through the tasks on a tiny budget", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await dataset(tmp);
    const pre = await task([
      "tasks/pretrain.ts",
      "--backend=wasm",
      `--data=${d.train}`,
      `--out=${tmp}/runs`,
      ...TINY_MODEL,
      ...TINY_DECODER,
      "--batchSize=16",
      "--epochs=2",
      "--warmupEpochs=1",
      "--lr=1e-3",
      "--logEvery=1",
    ]);
    assert.equal(pre.code, 0, pre.stderr);
    assert.match(pre.stdout, /^pretrain: 12 steps \(all epochs\), final loss \d+\.\d+/m);
    const preDir = runFolder(pre.stdout);
    for (
      const f of [
        "config.json",
        "log.jsonl",
        "metrics.json",
        "checkpoint.json",
        "model.safetensors",
      ]
    ) {
      await Deno.stat(`${preDir}/${f}`);
    }
    const ft = await task([
      "tasks/finetune.ts",
      "--backend=wasm",
      `--data=${d.train}`,
      `--data.test=${d.test}`,
      `--init=${preDir}`,
      `--out=${tmp}/runs`,
      ...TINY_MODEL,
      "--model.numClasses=4",
      "--batchSize=16",
      "--epochs=3",
      "--warmupEpochs=1",
      "--lr=3e-3",
    ]);
    assert.equal(ft.code, 0, ft.stderr);
    assert.match(
      ft.stderr,
      /finetune: loaded \d+ of \d+ tensors from .*model\.safetensors; fresh \(the classifier's own\): head\.weight, head\.bias; dropped \(decoder \/ MLM\)/,
    );
    const m = /test top-1 (\d+\.\d+)% top-5 (\d+\.\d+)% \(n=48\)/.exec(ft.stdout);
    assert.ok(m, ft.stdout);
    const ftDir = runFolder(ft.stdout);
    const metrics = JSON.parse(await Deno.readTextFile(`${ftDir}/metrics.json`));
    assert.equal(metrics.steps, 18);
    assert.equal(metrics.eval.n, 48);
    const start = (await readRunLog(ftDir))[0];
    assert.equal((start.config as { init: string }).init, preDir);
    assert.equal((start.versions as { backend: string }).backend, "wasm");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("deno task demo runs both phases and prints the test accuracy and run folders", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await dataset(tmp);
    const r = await task([
      "tasks/demo.ts",
      `--data=${d.train}`,
      `--out=${tmp}/runs`,
      ...TINY_MODEL,
      ...TINY_DECODER.map((a) => a.replace("--", "--pretrain.")),
      "--finetune.model.numClasses=4",
      "--batchSize=16",
      "--data.limitTrain=64",
      "--pretrain.epochs=1",
      "--pretrain.warmupEpochs=0",
      "--finetune.epochs=2",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /demo done in \d+\.\d min on /);
    assert.match(r.stdout, /test accuracy: top-1 \d+\.\d+%, top-5 \d+\.\d+% \(48 images\)/);
    const folders = [...r.stdout.matchAll(/run folder: (.+)$/gm)].map((x) => x[1].trim());
    assert.equal(folders.length, 2);
    assert.match(folders[0], /-pretrain$/);
    assert.match(folders[1], /-finetune$/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("--resume continues a stopped run with the same losses as an uninterrupted one (cpu)", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await dataset(tmp);
    const common = [
      "tasks/pretrain.ts",
      "--backend=cpu",
      `--data=${d.train}`,
      `--out=${tmp}/runs`,
      ...TINY_MODEL,
      ...TINY_DECODER,
      "--batchSize=16",
      "--epochs=2",
      "--warmupEpochs=1",
      "--lr=1e-3",
      "--logEvery=1",
      "--crop=random",
    ];
    const full = await task(common);
    assert.equal(full.code, 0, full.stderr);
    const part = await task([...common, "--maxSteps=7"]);
    assert.equal(part.code, 0, part.stderr);
    assert.match(part.stdout, /^pretrain: 7 steps \(step budget\)/m);
    const dir = runFolder(part.stdout);
    const rest = await task([
      "tasks/pretrain.ts",
      "--backend=cpu",
      `--resume=${dir}`,
      "--maxSteps=null",
    ]);
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stderr, /resuming .* at step 7 \(epoch 1\)/);
    const losses = async (p: string) =>
      (await readRunLog(p)).filter((x) => x.type === "step").map((x) => x.loss);
    const want = await losses(runFolder(full.stdout));
    assert.equal(want.length, 12);
    assert.deepEqual(await losses(dir), want);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("config errors end the task with exit 1 and one line naming the key", async () => {
  const cases: [string[], RegExp][] = [
    [["--epoch=2"], /^error: TypeError: Unknown config key "epoch"; known keys: /m],
    [["--epochs=two"], /^error: TypeError: Config key "epochs": expected integer, got "two"$/m],
    [["--model.depht=2"], /^error: TypeError: Unknown config key "model\.depht"/m],
    [
      ["--lrScaling=cubic"],
      /^error: RangeError: Config key "lrScaling" \(in --lrScaling\): "cubic" is not one of/m,
    ],
    [["--config=configs/nope.json"], /^error: NotFound: /m],
    [["--batchSize=0"], /^error: RangeError: Config key "batchSize": 0 must be >= 1$/m],
  ];
  for (const [args, want] of cases) {
    const r = await task(["tasks/pretrain.ts", "--backend=cpu", ...args]);
    assert.equal(r.code, 1, `${args}: ${r.stderr}`);
    assert.match(r.stderr, want);
  }
  const usage = await task(["tasks/pretrain.ts", "--epochs"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /needs a value: --epochs=<value>/);
});
