/**
 * Hostile use of the training tasks, as spawned processes: Ctrl-C (SIGINT) and SIGTERM in
 * the middle of `pretrain` / `finetune` save a checkpoint and exit 130 / 143, and
 * `--resume` then gives exactly the losses of an uninterrupted run, with `trainSeconds`
 * counting both segments; a finished run resumed is left byte for byte as it was; and a
 * signal during the demo's pre-training starts no fine-tuning. Tiny models on the cpu
 * backend, each process under a watchdog.
 */
import assert from "node:assert/strict";
import { writeIdx } from "@lib/io";
import { Rng } from "@lib/random";
import { readRunLog } from "@lib/train";
import {
  loggedSteps,
  runFolder,
  runTask,
  stepLosses,
  TINY_DECODER,
  TINY_MODEL,
  tinyDataset,
} from "./_train_tiny.ts";

const PRETRAIN = (data: string, out: string) => [
  "tasks/pretrain.ts",
  "--backend=cpu",
  `--data=${data}`,
  `--out=${out}`,
  ...TINY_MODEL,
  ...TINY_DECODER,
  "--batchSize=8",
  "--epochs=4",
  "--warmupEpochs=1",
  "--lr=1e-3",
  "--logEvery=1",
];

const FINETUNE = (data: string, test: string, out: string) => [
  "tasks/finetune.ts",
  "--backend=cpu",
  `--data=${data}`,
  `--data.test=${test}`,
  `--out=${out}`,
  ...TINY_MODEL,
  "--model.numClasses=4",
  "--batchSize=8",
  "--epochs=4",
  "--warmupEpochs=1",
  "--lr=3e-3",
  "--logEvery=1",
];

/**
 * Run a task uninterrupted and, at the same time, once more interrupted with `signal` when
 * its log has 3 steps; resume that; its losses must be the uninterrupted run's.
 */
async function interruptAndResume(
  full: string[],
  args: string[],
  out: string,
  signal: Deno.Signal,
  code: number,
): Promise<void> {
  const [whole, stopped] = await Promise.all([
    runTask(full),
    runTask(args, { signalWhen: async () => (await loggedSteps(out)) >= 3 ? signal : null }),
  ]);
  assert.equal(whole.code, 0, whole.stderr);
  const wantLosses = await stepLosses(runFolder(whole.stdout));
  assert.equal(wantLosses.length, 32);
  assert.equal(stopped.code, code, stopped.stderr);
  assert.match(stopped.stderr, new RegExp(`${signal}: saving a checkpoint after this step`));
  assert.match(stopped.stderr, /stopped: Run ".*" stopped on request after step \d+/);
  const dir = /--resume (.+)\)$/m.exec(stopped.stderr)?.[1];
  assert.ok(dir, stopped.stderr);
  const log = await readRunLog(dir);
  const stop = log.find((r) => r.type === "stopped");
  assert.ok(stop, "a stopped record");
  assert.ok((stop.step as number) < wantLosses.length, `stopped at ${stop.step}: mid-run`);
  const ck = JSON.parse(await Deno.readTextFile(`${dir}/checkpoint.json`));
  assert.equal(ck.step, stop.step);
  const resumed = await runTask([args[0], "--backend=cpu", `--resume=${dir}`]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming .* at step ${stop.step}`));
  assert.deepEqual(await stepLosses(dir), wantLosses);
  // trainSeconds counts both segments: the sum of every logged step's time (logEvery 1)
  const steps = (await readRunLog(dir)).filter((r) => r.type === "step");
  const sum = steps.reduce((a, r) => a + (r.step_s as number), 0);
  const m = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
  assert.ok(Math.abs(m.trainSeconds - sum) <= 1e-9 * sum, `${m.trainSeconds} vs ${sum}`);
  assert.equal(m.steps, wantLosses.length);
}

Deno.test("pretrain: SIGINT mid-run checkpoints, exits 130, and --resume gives the uninterrupted losses", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    await interruptAndResume(
      PRETRAIN(d.train, `${tmp}/full`),
      PRETRAIN(d.train, `${tmp}/cut`),
      `${tmp}/cut`,
      "SIGINT",
      130,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("finetune: SIGTERM mid-run checkpoints, exits 143, and --resume gives the uninterrupted losses", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    await interruptAndResume(
      FINETUNE(d.train, d.test, `${tmp}/full`),
      FINETUNE(d.train, d.test, `${tmp}/cut`),
      `${tmp}/cut`,
      "SIGTERM",
      143,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("--resume of a finished run says so and changes no file", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    const args = [...PRETRAIN(d.train, `${tmp}/runs`), "--epochs=2"];
    const first = await runTask(args);
    assert.equal(first.code, 0, first.stderr);
    const dir = runFolder(first.stdout);
    const before = new Map<string, Uint8Array>();
    for await (const e of Deno.readDir(dir)) {
      before.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
    }
    const again = await runTask(["tasks/pretrain.ts", "--backend=cpu", `--resume=${dir}`]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stderr,
      /is already finished \(step 16 of 16\); nothing to do, nothing changed/,
    );
    const m = JSON.parse(new TextDecoder().decode(before.get("metrics.json")));
    assert.ok(Number.isFinite(m.lastLoss));
    assert.match(again.stdout, new RegExp(`final loss ${m.lastLoss.toFixed(4)}`));
    const after = new Map<string, Uint8Array>();
    for await (const e of Deno.readDir(dir)) {
      after.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
    }
    assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort());
    for (const [k, v] of before) assert.deepEqual(after.get(k), v, `${k} changed`);
    // a crash between the last checkpoint and metrics.json: the resume writes the summary
    // with the run's own last loss and time, not NaN / null
    await Deno.remove(`${dir}/metrics.json`);
    const finish = await runTask(["tasks/pretrain.ts", "--backend=cpu", `--resume=${dir}`]);
    assert.equal(finish.code, 0, finish.stderr);
    const m2 = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
    assert.equal(m2.lastLoss, m.lastLoss);
    assert.equal(m2.trainSeconds, m.trainSeconds);
    assert.equal(m2.steps, 16);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("demo: SIGINT during pre-training checkpoints it, exits 130 and starts no fine-tuning", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    const out = `${tmp}/runs`;
    const r = await runTask([
      "tasks/demo.ts",
      "--backend=cpu",
      `--data=${d.train}`,
      `--out=${out}`,
      ...TINY_MODEL,
      ...TINY_DECODER.map((a) => a.replace("--", "--pretrain.")),
      "--finetune.model.numClasses=4",
      "--batchSize=8",
      "--logEvery=1",
      "--pretrain.epochs=6",
      "--pretrain.warmupEpochs=1",
      "--finetune.epochs=2",
    ], { signalWhen: async () => (await loggedSteps(out)) >= 3 ? "SIGINT" : null });
    assert.equal(r.code, 130, r.stderr);
    assert.doesNotMatch(r.stderr, /phase 2 of 2/);
    const folders = [];
    for await (const e of Deno.readDir(out)) folders.push(e.name);
    assert.equal(folders.length, 1, folders.join(", "));
    assert.match(folders[0], /-pretrain$/);
    await Deno.stat(`${out}/${folders[0]}/checkpoint.json`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("tokenizer:train: SIGINT mid-run checkpoints, exits 130, and --resume matches the uninterrupted run", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    // 32 synthetic 28x28 images (smooth blobs, so that training has something to learn)
    const rng = new Rng(3);
    const data = new Uint8Array(32 * 784);
    for (let i = 0; i < 32; i++) {
      const cx = rng.int(6, 22), cy = rng.int(6, 22), r = rng.int(3, 8);
      for (let y = 0; y < 28; y++) {
        for (let x = 0; x < 28; x++) {
          data[i * 784 + y * 28 + x] = (x - cx) ** 2 + (y - cy) ** 2 < r * r ? 220 : 10;
        }
      }
    }
    const images = `${tmp}/images-idx3-ubyte`;
    await Deno.writeFile(images, writeIdx({ dtype: "uint8", shape: [32, 28, 28], data }));
    const args = (out: string) => [
      "tasks/tokenizer_train.ts",
      "--backend=wasm",
      "--tokenizer.widths=[4,8,8]",
      "--tokenizer.codebookSize=16",
      "--tokenizer.codeDim=8",
      `--images=${images}`,
      "--testImages=",
      "--train.steps=12",
      "--train.batchSize=8",
      `--out=${out}`,
    ];
    const full = await runTask(args(`${tmp}/full`));
    assert.equal(full.code, 0, full.stderr);
    const cut = `${tmp}/cut`;
    const checkpointed = async () => {
      try {
        return JSON.parse(await Deno.readTextFile(`${cut}/checkpoint.json`)).step as number;
      } catch {
        return 0;
      }
    };
    // the run writes no log while it trains: signal it after its first step's progress line
    let started = false;
    const stopped = await runTask([...args(cut), "--train.checkpointEvery=2"], {
      signalWhen: async () => {
        started ||= (await checkpointed()) >= 2;
        return started ? "SIGINT" : null;
      },
    });
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(stopped.stderr, /tokenizer: SIGINT: saving a checkpoint after this step/);
    const at = await checkpointed();
    assert.ok(at >= 2 && at < 12, `stopped at ${at}`);
    const resumed = await runTask([
      ...args(cut),
      "--train.checkpointEvery=2",
      `--resume=${cut}`,
    ]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resumed from .* at step ${at}`));
    const metrics = async (dir: string) =>
      JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
    const [a, b] = [await metrics(`${tmp}/full`), await metrics(cut)];
    assert.deepEqual(b.lastSteps, a.lastSteps);
    assert.equal(b.codebookAfter, a.codebookAfter);
    assert.ok(b.trainSeconds >= 0);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
