/**
 * Hostile use of the training tasks, as spawned processes: Ctrl-C (SIGINT) and SIGTERM in
 * the middle of `pretrain` / `finetune` save a checkpoint and exit 130 / 143, and
 * `--resume` then gives exactly the losses of an uninterrupted run, with `trainSeconds`
 * counting both segments; a finished run resumed is left byte for byte as it was; and a
 * signal during the demo's pre-training starts no fine-tuning. Tiny models on the cpu
 * backend, each process under a watchdog.
 */
import assert from "node:assert/strict";
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
  "--epochs=6",
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
  "--epochs=6",
  "--warmupEpochs=1",
  "--lr=3e-3",
  "--logEvery=1",
];

/** Interrupt a task with `signal` once its log has 3 steps; resume it; compare with `full`. */
async function interruptAndResume(
  args: string[],
  out: string,
  signal: Deno.Signal,
  code: number,
  wantLosses: number[],
): Promise<void> {
  const stopped = await runTask(args, {
    signalWhen: async () => (await loggedSteps(out)) >= 3 ? signal : null,
  });
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
    const full = await runTask(PRETRAIN(d.train, `${tmp}/full`));
    assert.equal(full.code, 0, full.stderr);
    const want = await stepLosses(runFolder(full.stdout));
    assert.equal(want.length, 48);
    await interruptAndResume(PRETRAIN(d.train, `${tmp}/cut`), `${tmp}/cut`, "SIGINT", 130, want);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("finetune: SIGTERM mid-run checkpoints, exits 143, and --resume gives the uninterrupted losses", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    const full = await runTask(FINETUNE(d.train, d.test, `${tmp}/full`));
    assert.equal(full.code, 0, full.stderr);
    const want = await stepLosses(runFolder(full.stdout));
    assert.equal(want.length, 48);
    await interruptAndResume(
      FINETUNE(d.train, d.test, `${tmp}/cut`),
      `${tmp}/cut`,
      "SIGTERM",
      143,
      want,
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
