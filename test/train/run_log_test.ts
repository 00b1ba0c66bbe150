import assert from "node:assert/strict";
import { createRunDir, formatDuration, Progress, readRunLog, RunLog } from "@lib/train";

function sink() {
  const out: string[] = [];
  return {
    out,
    writeSync: (b: Uint8Array) => {
      out.push(new TextDecoder().decode(b));
      return b.length;
    },
  };
}

Deno.test("Progress on a terminal rewrites one line with step/total, fields, rate and ETA", () => {
  let t = 0;
  const s = sink();
  const p = new Progress({ label: "pretrain", total: 10, sink: s, tty: true, now: () => t });
  t = 2000;
  p.update(2, { loss: 5.25, lr: 1.5e-4 });
  t = 4000;
  p.update(4, { loss: 4.5 });
  p.log("checkpoint saved");
  p.finish("done");
  assert.equal(s.out[0], "\rpretrain 2/10 (20%) loss 5.2500 lr 1.50e-4 | 1.0 it/s | ETA 8s");
  assert.ok(s.out[1].startsWith("\rpretrain 4/10 (40%) loss 4.5000 | 1.0 it/s | ETA 6s"));
  assert.ok(s.out[1].endsWith("ETA 6s" + " ".repeat(11)), "the longer previous line is blanked");
  assert.ok(s.out[2].startsWith("\r ") && s.out[2].endsWith("\r"));
  assert.deepEqual(s.out.slice(3), ["checkpoint saved\n", "done\n"]);
});

Deno.test("Progress without a terminal prints plain lines at a bounded rate and the last one", () => {
  let t = 0;
  const s = sink();
  const p = new Progress({
    label: "finetune",
    total: 100,
    sink: s,
    tty: false,
    plainIntervalMs: 10_000,
    now: () => t,
  });
  for (let i = 1; i <= 100; i++) {
    t = i * 1000;
    p.update(i, { loss: 1 });
  }
  // t = 1 s (first), 11 s, 21 s, ... 91 s, and step 100
  assert.equal(s.out.length, 11);
  assert.ok(s.out.every((l) => l.endsWith("\n") && !l.includes("\r")));
  assert.match(s.out[10], /^finetune 100\/100 \(100%\) loss 1 \| 1\.0 it\/s \| ETA 0s\n$/);
  assert.equal(formatDuration(3725), "1h02m");
  assert.equal(formatDuration(185), "3m05s");
});

Deno.test("RunLog writes config.json, a start record with versions, and appends records", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const now = new Date("2026-01-02T03:04:05Z");
    const dir = await createRunDir(tmp, "pretrain", now);
    const dir2 = await createRunDir(tmp, "pretrain", now);
    assert.equal(dir, `${tmp}/20260102-030405-pretrain`);
    assert.equal(dir2, `${tmp}/20260102-030405-pretrain-2`);
    const log = await RunLog.create(dir, { config: { seed: 3, lr: 1e-3 }, seed: 3 });
    await log.write({ type: "step", step: 1, loss: 2.5 });
    await log.writeMetrics({ top1: 0.5 });
    const again = await RunLog.resume(dir, { from: { step: 1 } });
    await again.write({ type: "end" });
    const recs = await readRunLog(dir);
    assert.deepEqual(recs.map((r) => r.type), ["start", "step", "resume", "end"]);
    const v = recs[0].versions as Record<string, string>;
    assert.equal(v.deno, Deno.version.deno);
    assert.match(v.tfjs, /^4\.22\./);
    assert.equal(recs[0].seed, 3);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)), {
      seed: 3,
      lr: 1e-3,
    });
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`)), { top1: 0.5 });
    await Deno.writeTextFile(`${dir}/log.jsonl`, "{oops\n", { append: true });
    await assert.rejects(() => readRunLog(dir), {
      name: "SyntaxError",
      message: new RegExp(`^Cannot parse line 5 of "${dir}/log.jsonl"`),
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
