import assert from "node:assert/strict";
import { createRunDir, RunLog } from "@lib/train";
import { loadRun, loadRunLogs, recordsTable, rowsToTable } from "@lib/report";

async function makeRun(out: string, name: string, losses: number[]): Promise<string> {
  const dir = await createRunDir(out, name, new Date(Date.UTC(2026, 0, 2, 3, 4, 5)));
  const log = await RunLog.create(dir, { config: { lr: 1e-3, name }, seed: 0 });
  for (let i = 0; i < losses.length; i++) {
    await log.write({ type: "step", step: i + 1, loss: losses[i], lr: 1e-3 });
  }
  await log.write({ type: "eval", step: losses.length, top1: 0.5 });
  await log.writeMetrics({ top1: 0.5 });
  return dir;
}

Deno.test("loadRun reads a run folder written by @lib/train's RunLog into tables", async () => {
  const out = await Deno.makeTempDir();
  try {
    const dir = await makeRun(out, "pretrain", [3, 2, 1.5]);
    const run = await loadRun(dir);
    assert.deepEqual(run.config, { lr: 1e-3, name: "pretrain" });
    assert.deepEqual(run.metrics, { top1: 0.5 });
    assert.equal(run.records.length, 5);
    assert.equal(run.log.numRows(), 5);
    assert.deepEqual(Array.from(run.log.array("type")), [
      "start",
      "step",
      "step",
      "step",
      "eval",
    ]);
    const steps = recordsTable(run.records, "step");
    assert.deepEqual(steps.columnNames(), ["step", "loss", "lr"]);
    assert.deepEqual(Array.from(steps.array("loss")), [3, 2, 1.5]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("loadRunLogs stacks several runs with a run column", async () => {
  const out = await Deno.makeTempDir();
  try {
    const a = await makeRun(out, "a", [2, 1]);
    const b = await makeRun(out, "b", [4]);
    const t = await loadRunLogs([a, { dir: b, label: "second" }], "step");
    assert.deepEqual(t.columnNames(), ["run", "step", "loss", "lr"]);
    assert.deepEqual(Array.from(t.array("run")), [
      "20260102-030405-a",
      "20260102-030405-a",
      "second",
    ]);
    assert.deepEqual(Array.from(t.array("loss")), [2, 1, 4]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("rowsToTable unions keys in first-seen order and fills null", () => {
  const t = rowsToTable([{ a: 1 }, { b: "x" }, { a: 3, c: [1, 2] }]);
  assert.deepEqual(t.columnNames(), ["a", "b", "c"]);
  assert.deepEqual(Array.from(t.array("a")), [1, null, 3]);
  assert.deepEqual(Array.from(t.array("c")), [null, null, [1, 2]]);
});

Deno.test("loadRun names the file for bad JSON and refuses an empty folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => loadRun(dir), {
      name: "NotFound",
      message: `Cannot load run "${dir}": none of config.json, log.jsonl, metrics.json exists`,
    });
    await Deno.writeTextFile(`${dir}/metrics.json`, "[1]");
    await assert.rejects(() => loadRun(dir), {
      name: "SyntaxError",
      message: `Cannot parse "${dir}/metrics.json": expected a JSON object`,
    });
    await Deno.writeTextFile(`${dir}/metrics.json`, "{}");
    await Deno.writeTextFile(`${dir}/log.jsonl`, '{"type":"step"}\n{oops\n');
    await assert.rejects(() => loadRun(dir), (e: Error) => {
      assert.equal(e.name, "SyntaxError");
      assert.match(e.message, new RegExp(`^Cannot parse line 2 of "${dir}/log.jsonl"`));
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
