import assert from "node:assert/strict";
import { readTokenAdaptCurve, tokenAdaptCurveFigure } from "@lib/report";

const log = (steps: number, evalEvery: number) => {
  const out: string[] = [];
  const ev = (s: number) =>
    JSON.stringify({
      step: s,
      heldOut: {
        pretrain: { tokenAdapt: 0.1 + s / 1000, naive: 0.07, loss: 5 - s / 100 },
        identity: { tokenAdapt: 0.2, naive: 1, loss: 4 },
      },
    });
  out.push(ev(0));
  for (let s = 0; s < steps; s++) {
    out.push(JSON.stringify({ step: s, lr: 1e-3, loss: 10 - s / 10, accuracy: 0, seconds: 1 }));
    if ((s + 1) % evalEvery === 0) out.push(ev(s + 1));
  }
  return out.join("\n") + "\n";
};

Deno.test("readTokenAdaptCurve: windowed training loss, evaluations in step order", () => {
  const c = readTokenAdaptCurve(log(100, 50), 10);
  // 100 steps, windows of at most 100 / 20 = 5 steps
  assert.equal(c.train.step.length, 20);
  assert.equal(c.train.step[0], 5);
  assert.ok(Math.abs(c.train.loss[0] - (10 - 0.2)) < 1e-12); // mean of steps 0..4
  assert.deepEqual(c.evals.map((e) => e.step), [0, 50, 100]);
  assert.ok(Math.abs(c.evals[1].heldOut.pretrain.tokenAdapt - 0.15) < 1e-12);
  // a partial last window is dropped
  const d = readTokenAdaptCurve(log(103, 50), 5);
  assert.equal(d.train.step.at(-1), 100);
  assert.throws(() => readTokenAdaptCurve('{"step": 0}\nnot json\n'), /line 2/);
});

Deno.test("tokenAdaptCurveFigure: loss on the left axis, agreement on the right, no naive line for identity", () => {
  const fig = tokenAdaptCurveFigure(readTokenAdaptCurve(log(100, 25)), "t");
  const names = fig.spec.data.map((t) => `${t.name}|${t.yaxis ?? "y"}`);
  assert.deepEqual(names, [
    "training loss|y",
    "held-out loss, A = pretrain|y",
    "held-out agreement, TokenAdapt, A = pretrain|y2",
    "held-out agreement, naive, A = pretrain|y2",
    "held-out loss, A = identity|y",
    "held-out agreement, TokenAdapt, A = identity|y2",
  ]);
  assert.deepEqual(fig.spec.data[2].x, [0, 25, 50, 75, 100]);
});
