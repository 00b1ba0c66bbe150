/**
 * Hostile input to the training tasks, as spawned processes: `--resume` with overrides
 * that would change the run's data order or schedule (refused unless `--force`, harmless
 * ones allowed), `finetune --init` from a pre-training of another width or depth (refused,
 * naming the tensor), and errors found after a run folder is made (no empty folder left,
 * a folder that existed before kept). Tiny models on the cpu backend, under a watchdog.
 */
import assert from "node:assert/strict";
import { writeIdx } from "@lib/io";
import {
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
  "--epochs=2",
  "--warmupEpochs=1",
  "--lr=1e-3",
  "--logEvery=1",
];

async function entries(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("--resume refuses overrides that change the data order or schedule, naming the key and both values", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    const first = await runTask([...PRETRAIN(d.train, `${tmp}/runs`), "--maxSteps=3"]);
    assert.equal(first.code, 0, first.stderr);
    const dir = runFolder(first.stdout);
    const log = await Deno.readFile(`${dir}/log.jsonl`);
    // each key of the table is checked in test/train/resume_check_test.ts; here the task's way
    const cases: [string, RegExp][] = [
      ["--batchSize=4", /with batchSize=4: the run has batchSize=8, and changing it changes/],
      [`--data=${d.test}`, /with data\.train=".*syn-test.*": the run has data\.train=".*syn-train/],
      ["--maxSteps=2", /with maxSteps=2: the run has maxSteps=3, and its checkpoint is at step 3/],
    ];
    for (const [arg, want] of cases) {
      const r = await runTask(["tasks/pretrain.ts", "--backend=cpu", `--resume=${dir}`, arg]);
      assert.equal(r.code, 1, `${arg}: ${r.stderr}`);
      const line = r.stderr.split("\n").filter((l) => l.startsWith("error: "));
      assert.equal(line.length, 1, r.stderr);
      assert.match(line[0], /^error: ResumeConflictError: Cannot resume ".*"/);
      assert.match(line[0], want);
      assert.match(line[0], /pass --force to resume with it anyway$/);
    }
    assert.deepEqual(await Deno.readFile(`${dir}/log.jsonl`), log, "refusals wrote nothing");
    // harmless: the log interval; a larger budget moves only where the run stops
    const more = await runTask([
      "tasks/pretrain.ts",
      "--backend=cpu",
      `--resume=${dir}`,
      "--logEvery=2",
      "--maxSteps=6",
    ]);
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stderr, /resuming with logEvery 1 -> 2/);
    assert.match(more.stdout, /^pretrain: 6 steps \(step budget\)/m);
    // forced: accepted and said to be so
    const forced = await runTask([
      "tasks/pretrain.ts",
      "--backend=cpu",
      `--resume=${dir}`,
      "--maxSteps=7",
      "--lr=0.002",
      "--force",
    ]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(
      forced.stderr,
      /resuming with lr 0\.001 -> 0\.002 \(--force: not an exact resume\)/,
    );
    assert.equal((await stepLosses(dir)).length, 3 + 2 + 1); // 4 and 6 logged, then 7
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("finetune --init from another width or depth is refused naming the tensor, and leaves no run folder", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    const pre = await runTask([...PRETRAIN(d.train, `${tmp}/pre`), "--maxSteps=1"]);
    assert.equal(pre.code, 0, pre.stderr);
    const preDir = runFolder(pre.stdout);
    const finetune = (out: string, ...more: string[]) =>
      runTask([
        "tasks/finetune.ts",
        "--backend=cpu",
        `--data=${d.train}`,
        `--data.test=${d.test}`,
        `--init=${preDir}`,
        `--out=${out}`,
        ...TINY_MODEL,
        "--model.numClasses=4",
        "--batchSize=8",
        "--epochs=2",
        "--warmupEpochs=1",
        ...more,
      ]);
    const wider = await finetune(`${tmp}/ft-new`, "--model.embedDim=32");
    assert.equal(wider.code, 1, wider.stderr);
    assert.match(
      wider.stderr,
      /^error: InitMismatchError: Cannot fine-tune from ".*model\.safetensors": it is not a pre-training of this model: tensor [\w.]+: got \[[\d, ]+\], expected \[[\d, ]+\] \(and \d+ more mismatched\)$/m,
    );
    assert.doesNotMatch(wider.stderr, /run folder/, "refused before a run folder is made");
    assert.ok(!(await exists(`${tmp}/ft-new`)), "no runs folder made");
    await Deno.mkdir(`${tmp}/ft-old`);
    await Deno.writeTextFile(`${tmp}/ft-old/keep.txt`, "mine");
    const deeper = await finetune(`${tmp}/ft-old`, "--model.depth=2");
    assert.equal(deeper.code, 1, deeper.stderr);
    assert.match(
      deeper.stderr,
      /^error: InitMismatchError: .*: encoder tensor blocks\.1\.[\w.]+ is missing from it \(and \d+ more\) \(a shallower or different encoder\)$/m,
    );
    assert.deepEqual(await entries(`${tmp}/ft-old`), ["keep.txt"], "only the run folder went");
    await Deno.mkdir(`${tmp}/ft-empty`);
    const shallower = await runTask([
      ...PRETRAIN(d.train, `${tmp}/pre2`),
      "--maxSteps=1",
      "--model.depth=2",
    ]);
    assert.equal(shallower.code, 0, shallower.stderr);
    const r = await finetune(`${tmp}/ft-empty`, `--init=${runFolder(shallower.stdout)}`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /encoder tensor blocks\.1\.[\w.]+ has no place in the classifier/);
    assert.deepEqual(await entries(`${tmp}/ft-empty`), [], "an empty folder given stays");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a plan that does not fit the data is refused before a run folder is made", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await tinyDataset(tmp);
    const r = await runTask([...PRETRAIN(d.train, `${tmp}/runs`), "--batchSize=128"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^error: RangeError: Cannot train on 64 records with batch 128 x accumIter 1: not one optimizer step per epoch$/m,
    );
    assert.ok(!(await exists(`${tmp}/runs`)));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("tokenadapt:train makes no output folder when its images cannot be read", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const r = await runTask([
      "tasks/tokenadapt_train.ts",
      "--backend=cpu",
      "--tokenizer=data/fmnist8",
      `--images=${tmp}/missing-idx3-ubyte`,
      `--out=${tmp}/ta`,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /missing-idx3-ubyte/);
    assert.ok(!(await exists(`${tmp}/ta`)));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("tokenizer:train removes the run folder it made when training fails before a checkpoint", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const images = `${tmp}/images-idx3-ubyte`;
    const data = Uint8Array.from({ length: 16 * 784 }, (_, i) => (i * 7) % 251);
    await Deno.writeFile(images, writeIdx({ dtype: "uint8", shape: [16, 28, 28], data }));
    const args = (out: string) => [
      "tasks/tokenizer_train.ts",
      "--backend=cpu",
      "--tokenizer.widths=[4,8,8]",
      "--tokenizer.codebookSize=16",
      "--tokenizer.codeDim=8",
      `--images=${images}`,
      "--testImages=",
      "--train.steps=4",
      "--train.batchSize=32",
      `--out=${out}`,
    ];
    const r = await runTask(args(`${tmp}/tok`));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Cannot train on 16 images with batches of 32/);
    assert.ok(!(await exists(`${tmp}/tok`)), "the folder it made is removed");
    await Deno.mkdir(`${tmp}/mine`);
    const kept = await runTask(args(`${tmp}/mine`));
    assert.notEqual(kept.code, 0);
    assert.ok(await exists(`${tmp}/mine`), "a folder that existed is kept");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
