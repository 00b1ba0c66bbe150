/**
 * `deno task tokenadapt:train` as a spawned process: SIGTERM mid-run saves a checkpoint and
 * exits 143; `--resume` then gives exactly the steps, held-out evaluations and weights of
 * an uninterrupted run, and the same curve SVG (drawn from the log only; `--curve` redraws it
 * byte for byte). A tiny TokenAdapt
 * on the shipped Fashion-MNIST sample and the committed tokenizer, wasm backend.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runTask } from "../hostile/_train_tiny.ts";
import { SAMPLE_IMAGES } from "../_support/fashion_mnist.ts";

const args = (out: string) => [
  "tasks/tokenadapt_train.ts",
  "--backend=wasm",
  `--out=${out}`,
  `--images=${SAMPLE_IMAGES}`,
  `--testImages=${SAMPLE_IMAGES}`,
  "--holdout=16",
  "--evalImages=16",
  "--model.width=16",
  "--model.heads=2",
  "--model.headDim=8",
  "--model.mlpDim=32",
  "--train.steps=10",
  "--train.batchSize=8",
  "--train.warmupSteps=2",
  "--evalEvery=4",
  "--checkpointEvery=1",
];

async function lines(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
}

const stepsLogged = async (dir: string) =>
  (await lines(join(dir, "log.jsonl"))).filter((r) => r.heldOut === undefined).length;

Deno.test("tokenadapt:train: SIGTERM checkpoints, --resume continues exactly", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "ta-train-" });
  try {
    const [a, b] = [join(tmp, "whole"), join(tmp, "stopped")];
    const [whole, stopped] = await Promise.all([
      runTask(args(a), { watchdogMs: 180000 }),
      runTask(args(b), {
        watchdogMs: 180000,
        signalWhen: async () => (await stepsLogged(b)) >= 3 ? "SIGTERM" : null,
      }),
    ]);
    assert.equal(whole.code, 0, whole.stderr);
    assert.equal(stopped.code, 143, stopped.stderr);
    assert.match(stopped.stderr, /SIGTERM: saving a checkpoint after this step/);
    assert.match(stopped.stderr, /--resume /);
    const ck = JSON.parse(await Deno.readTextFile(join(b, "checkpoint.json")));
    assert.ok(ck.step >= 3 && ck.step < 10, `stopped at step ${ck.step}: mid-run`);
    assert.equal(await stepsLogged(b), ck.step, "the log ends at the checkpoint");
    // an override that changes the training is refused; one of the evaluation is not
    const refused = await runTask(["tasks/tokenadapt_train.ts", `--resume=${b}`, "--train.lr=0.1"]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /Cannot resume .* with train\.lr=0\.1/);
    const resumed = await runTask(
      ["tasks/tokenadapt_train.ts", "--backend=wasm", `--resume=${b}`, "--checkpointEvery=2"],
      { watchdogMs: 180000 },
    );
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resumed .* at step ${ck.step} of 10`));
    const strip = (rs: Record<string, unknown>[]) => rs.map((r) => ({ ...r, seconds: 0 }));
    const [la, lb] = [await lines(join(a, "log.jsonl")), await lines(join(b, "log.jsonl"))];
    assert.equal(la.filter((r) => r.heldOut !== undefined).length, 4, "evals at 0, 4, 8, 10");
    assert.deepEqual(strip(lb), strip(la));
    assert.deepEqual(
      await Deno.readFile(join(b, "tokenadapt.safetensors")),
      await Deno.readFile(join(a, "tokenadapt.safetensors")),
    );
    const [ma, mb] = [
      JSON.parse(await Deno.readTextFile(join(a, "metrics.json"))),
      JSON.parse(await Deno.readTextFile(join(b, "metrics.json"))),
    ];
    assert.deepEqual(mb.agreementByUse, ma.agreementByUse);
    assert.deepEqual(Object.keys(ma.agreementByUse), ["pretrain", "finetune", "identity"]);
    assert.deepEqual(mb.train.geometric.map((g: { cropScale: number[] }) => g.cropScale), [
      [0.2, 1],
      [0.35, 1],
    ]);
    // the curve comes from the log alone: the same steps give the same SVG
    assert.deepEqual(
      await Deno.readTextFile(join(b, "curve.svg")),
      await Deno.readTextFile(join(a, "curve.svg")),
    );
    // --curve redraws it from the log alone, byte for byte
    const svg = await Deno.readTextFile(join(a, "curve.svg"));
    await Deno.remove(join(a, "curve.svg"));
    const redrawn = await runTask(["tasks/tokenadapt_train.ts", "--curve", a]);
    assert.equal(redrawn.code, 0, redrawn.stderr);
    assert.equal(await Deno.readTextFile(join(a, "curve.svg")), svg);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("tokenadapt:train --curve: the committed v2 curve regenerates byte for byte from its log", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "ta-curve-" });
  try {
    const committed = "results/tokenadapt/fmnist8-v2";
    await Deno.copyFile(join(committed, "log.jsonl"), join(tmp, "log.jsonl"));
    const r = await runTask(["tasks/tokenadapt_train.ts", `--curve=${tmp}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      await Deno.readTextFile(join(tmp, "curve.svg")),
      await Deno.readTextFile(join(committed, "curve.svg")),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
