import assert from "node:assert/strict";
import { $display, LiveProgress } from "@lib/report";

function sink() {
  const lines: string[] = [];
  const dec = new TextDecoder();
  return { lines, writeSync: (b: Uint8Array) => (lines.push(dec.decode(b)), b.length) };
}

Deno.test("outside the kernel LiveProgress writes @lib/train's progress lines", () => {
  let t = 0;
  const s = sink();
  const p = new LiveProgress({
    total: 4,
    label: "pretrain",
    sink: s,
    tty: false,
    plainIntervalMs: 0,
    now: () => t,
  });
  for (let i = 1; i <= 4; i++) {
    t += 500;
    p.update(i, { loss: 1 / i });
  }
  p.finish("done");
  assert.equal(s.lines.length, 5);
  assert.match(s.lines[0], /^pretrain 1\/4 \(25%\) loss 1 \| /);
  assert.match(s.lines[3], /^pretrain 4\/4 \(100%\) loss 0\.2500/);
  assert.equal(s.lines[4], "done\n");
  assert.deepEqual(p.rows.map((r) => r.step), [1, 2, 3, 4]);
});

Deno.test("LiveProgress keeps numeric fields as rows and an arquero table", () => {
  const p = new LiveProgress({ total: 10, output: "none" });
  p.update(1, { loss: 2, phase: "warmup" });
  p.update(2, { loss: 1.5, lr: 0.1 });
  const t = p.table();
  assert.deepEqual(t.columnNames(), ["step", "loss", "lr"]);
  assert.deepEqual(Array.from(t.array("lr")), [null, 0.1]);
  assert.equal(p.step, 2);
  p.finish();
  assert.throws(() => p.update(3), {
    name: "RangeError",
    message: 'Cannot update progress "" after finish()',
  });
});

Deno.test("LiveProgress renders html with a bar and a loss curve, text with rate and ETA", () => {
  let t = 0;
  const p = new LiveProgress({ total: 100, label: "mtm", output: "none", now: () => t });
  for (let i = 1; i <= 50; i++) {
    t += 100;
    p.update(i, { loss: 5 - i / 20 });
  }
  const text = String(p);
  assert.equal(text, "mtm 50/100 (50%) loss 2.5 | 10.0 it/s | elapsed 5s | ETA 5s");
  const b = p[$display]();
  assert.deepEqual(Object.keys(b).sort(), ["text/html", "text/plain"]);
  const html = b["text/html"] as string;
  assert.ok(html.includes("width:50.00%"));
  assert.ok(html.includes("<polyline"));
  assert.ok(html.includes("loss: min 2.5, max 4.95, last 2.5"));
  assert.ok(!html.includes("<script"));
  p.finish("finished");
  assert.match(String(p), /\| finished$/);
});

Deno.test("LiveProgress refuses a bad total or throttle", () => {
  assert.throws(() => new LiveProgress({ total: -1 }), RangeError);
  assert.throws(() => new LiveProgress({ total: 1, throttleMs: NaN }), RangeError);
});
