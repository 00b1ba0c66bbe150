import assert from "node:assert/strict";
import {
  AuthorsImportError,
  importAuthorsRun,
  latestAuthorsCheckpoint,
  parseAuthorsLog,
} from "@lib/bridge";
import { bytesOf, readSafetensorsFile } from "@lib/io";
import { loadGridRuns } from "@lib/report";
import { readModelWeights, readRunLog } from "@lib/train";
import { parityPath } from "../_support/fixtures.ts";
import { torchHelper } from "../_support/torch_python.ts";

Deno.test("parseAuthorsLog: SeiT++ fine-tuning, SeiT++ pre-training and MAE lines; NaN; bad lines named", () => {
  const ft = parseAuthorsLog(
    '{"finetune/train_lr": 0.001, "finetune/train_loss": NaN, "finetune/test_acc1": 12.5, ' +
      '"finetune/test_acc5": 40.0, "finetune/test_loss": 4.0, "epoch": 0}\n\n',
  );
  assert.equal(ft.phase, "finetune");
  assert.deepEqual(
    { ...ft.epochs[0], values: undefined },
    {
      epoch: 0,
      trainLoss: null,
      trainLr: 0.001,
      testLoss: 4,
      testAcc1: 12.5,
      testAcc5: 40,
      values: undefined,
    },
  );
  const pt = parseAuthorsLog(
    '{"pretrain/loss": 5.5, "pretrain/lr": 1e-4, "epoch": 0}\n' +
      '{"pretrain/loss": 5.0, "pretrain/lr": 2e-4, "epoch": 1}\n',
  );
  assert.equal(pt.phase, "pretrain");
  assert.deepEqual(pt.epochs.map((e) => [e.trainLoss, e.trainLr]), [[5.5, 1e-4], [5, 2e-4]]);
  const mae = parseAuthorsLog(
    '{"train_lr": 0.1, "train_loss": 2.0, "test_acc1": 50.0, "epoch": 4, "n_parameters": 86}',
  );
  assert.equal(mae.phase, "finetune");
  assert.equal(mae.epochs[0].values.n_parameters, 86);
  assert.throws(
    () => parseAuthorsLog('{"epoch": 0}\n{"epoch": 1', "x/log.txt"),
    /line 2 of "x\/log\.txt"/,
  );
  assert.throws(() => parseAuthorsLog('{"loss": 1}', "l.txt"), /"epoch" is undefined/);
});

Deno.test("an authors' run folder imports as a run that loadGridRuns and deno task figures plot", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tokens = parityPath("tiny-train-token.data.bin.gz");
    await torchHelper("craft-run", `${dir}/authors`, tokens);
    assert.equal(
      await latestAuthorsCheckpoint(`${dir}/authors`),
      `${dir}/authors/checkpoint-2.pth`,
    );
    const r = await importAuthorsRun(`${dir}/authors`, { out: `${dir}/runs` });
    assert.equal(r.phase, "finetune");
    assert.equal(r.epochs, 3);
    // 50 records over 2 GPUs, 2 per GPU, accumulation 2: 6 optimizer steps an epoch
    assert.equal(r.stepsPerEpoch, 6);
    assert.ok(r.warnings.some((w) => w.startsWith("optimizer state of checkpoint-2.pth (")));
    const run = `${dir}/runs/authors-finetune-authors`;
    assert.equal(r.dir, run);
    // the weights, bit for bit, as our runs' weights file
    const want = (await readSafetensorsFile(`${dir}/authors/expected_model.safetensors`)).tensors;
    const got = (await readModelWeights(run)).tensors;
    assert.deepEqual([...got.keys()], [...want.keys()]);
    for (const [k, t] of want) assert.deepEqual(bytesOf(got.get(k)!.data), bytesOf(t.data), k);
    // the args (an argparse.Namespace) as JSON
    const config = JSON.parse(await Deno.readTextFile(`${run}/config.json`));
    assert.equal(config.imported.args.seed, 3);
    assert.deepEqual(config.imported.args.save_periods, ["last2", "best"]);
    assert.equal(config.imported.args.cutmix_minmax, null);
    assert.equal(config.imported.epoch, 2);
    assert.equal(config.imported.scaler.scale, 65536);
    // the log: steps at epoch ends, the NaN loss of epoch 1 left out of the curve
    const log = await readRunLog(run);
    assert.deepEqual(
      log.filter((l) => l.type === "eval").map((l) => [l.step, l.top1]),
      [[6, 0.015], [12, 0.1175], [18, 0.22]],
    );
    const [rec] = await loadGridRuns(`${dir}/runs`);
    assert.equal(rec.id, "authors-finetune-authors");
    assert.equal(rec.arm, "seitpp");
    assert.equal(rec.budget, "tiny-train");
    assert.equal(rec.records, 50);
    assert.equal(rec.seed, 3);
    assert.equal(rec.top1, 0.22);
    assert.deepEqual(rec.loss, [[6, 6.9], [18, 5.9]]);
    assert.deepEqual(rec.evals, [[6, 0.015], [12, 0.1175], [18, 0.22]]);
    // deno task figures, as a user runs it
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "figures",
        "--runs",
        `${dir}/runs`,
        "--out",
        `${dir}/figs`,
        "--formats",
        "svg",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const td = new TextDecoder();
    assert.ok(out.success, td.decode(out.stderr));
    for (const f of ["curves_loss_tiny-train.svg", "curves_top1_tiny-train.svg"]) {
      const svg = await Deno.readTextFile(`${dir}/figs/${f}`);
      assert.ok(svg.includes("authors' scripts, 2 GPUs"), `${f} shows the imported run`);
    }
    assert.match(await Deno.readTextFile(`${dir}/figs/accuracy_table.csv`), /22/);
    // a second import of the same folder is refused unless asked to replace it
    await assert.rejects(
      () => importAuthorsRun(`${dir}/authors`, { out: `${dir}/runs` }),
      Deno.errors.AlreadyExists,
    );
    const again = await importAuthorsRun(`${dir}/authors/checkpoint-2.pth`, {
      out: `${dir}/runs`,
      overwrite: true,
      budget: "fm8-600",
    });
    assert.equal(again.dir, run);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a checkpoint whose args hold another class is refused, naming it; nothing is imported", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await torchHelper("craft-run", `${dir}/authors`, "missing-token.data.bin.gz", "--unsafe-args");
    await assert.rejects(
      () => importAuthorsRun(`${dir}/authors`, { out: `${dir}/runs` }),
      (e) => {
        assert.ok(e instanceof AuthorsImportError);
        assert.match(e.message, /names pathlib\.PurePosixPath/);
        assert.match(e.message, /nothing of it was run or imported/);
        return true;
      },
    );
    await assert.rejects(
      () => Deno.stat(`${dir}/runs/authors-finetune-authors`),
      Deno.errors.NotFound,
    );
    // the log alone still imports (no weights), with steps counted in epochs
    await Deno.remove(`${dir}/authors/checkpoint-2.pth`);
    const r = await importAuthorsRun(`${dir}/authors`, { out: `${dir}/runs` });
    assert.equal(r.checkpoint, null);
    assert.equal(r.stepsPerEpoch, null);
    assert.ok(r.warnings.some((w) => w.startsWith("no checkpoint")));
    assert.ok(r.warnings.some((w) => w.includes("steps are epochs")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a pre-training log alone imports as an mtm run with its loss curve", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/pt`);
    await Deno.writeTextFile(
      `${dir}/pt/log.txt`,
      [0, 1, 2].map((e) =>
        JSON.stringify({ "pretrain/loss": 6 - e, "pretrain/lr": 1e-4, epoch: e })
      )
        .join("\n") + "\n",
    );
    const r = await importAuthorsRun(`${dir}/pt`, { out: `${dir}/runs`, budget: "fm8-600" });
    assert.equal(r.phase, "pretrain");
    const [rec] = await loadGridRuns(`${dir}/runs`);
    assert.deepEqual([rec.kind, rec.arm, rec.budget, rec.top1], [
      "pretrain",
      "mtm",
      "fm8-600",
      null,
    ]);
    assert.deepEqual(rec.loss, [[1, 6], [2, 5], [3, 4]]);
    await assert.rejects(() => Deno.stat(`${dir}/runs/authors-pretrain-pt/model.safetensors`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("latestAuthorsCheckpoint: the highest number, then last/best, then the newest .pth", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await latestAuthorsCheckpoint(dir), null);
    await Deno.writeFile(`${dir}/a.pth`, new Uint8Array(1));
    await Deno.writeFile(`${dir}/b.pth`, new Uint8Array(1));
    await Deno.utime(`${dir}/a.pth`, 1000, 1000);
    assert.equal(await latestAuthorsCheckpoint(dir), `${dir}/b.pth`);
    await Deno.writeFile(`${dir}/checkpoint-best.pth`, new Uint8Array(1));
    assert.equal(await latestAuthorsCheckpoint(dir), `${dir}/checkpoint-best.pth`);
    await Deno.writeFile(`${dir}/checkpoint-9.pth`, new Uint8Array(1));
    await Deno.writeFile(`${dir}/checkpoint-10.pth`, new Uint8Array(1));
    assert.equal(await latestAuthorsCheckpoint(dir), `${dir}/checkpoint-10.pth`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
