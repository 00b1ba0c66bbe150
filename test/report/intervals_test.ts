import assert from "node:assert/strict";
import {
  incompleteBeta,
  studentTCdf,
  studentTQuantile,
  tInterval,
  welchInterval,
} from "../../lib/report/intervals.ts";

function assertAlmostEquals(actual: number, expected: number, tol: number): void {
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `expected ${expected} within ${tol}, got ${actual}`,
  );
}

Deno.test("studentTQuantile: the 97.5% points of the published t table", () => {
  const table: [number, number][] = [
    [1, 12.706204736],
    [2, 4.302652730],
    [4, 2.776445105],
    [10, 2.228138852],
    [30, 2.042272456],
    [1e7, 1.959964],
  ];
  for (const [df, t] of table) assertAlmostEquals(studentTQuantile(0.975, df), t, 1e-5);
  assertAlmostEquals(studentTQuantile(0.025, 4), -2.776445105, 1e-6);
  assertAlmostEquals(studentTQuantile(0.95, 3), 2.353363435, 1e-6);
  // non-integer degrees of freedom lie between their neighbours
  const q = studentTQuantile(0.975, 4.5);
  assert.ok(q < studentTQuantile(0.975, 4) && q > studentTQuantile(0.975, 5));
  assertAlmostEquals(studentTCdf(q, 4.5), 0.975, 1e-10);
});

Deno.test("incompleteBeta and studentTCdf: closed forms", () => {
  // I_x(1, 1) = x; I_x(a, 1) = x^a; the t CDF with 1 df is the Cauchy CDF
  assertAlmostEquals(incompleteBeta(0.3, 1, 1), 0.3, 1e-12);
  assertAlmostEquals(incompleteBeta(0.6, 3, 1), 0.216, 1e-12);
  assertAlmostEquals(studentTCdf(1.5, 1), 0.5 + Math.atan(1.5) / Math.PI, 1e-12);
  assert.deepEqual(studentTCdf(0, 7), 0.5);
  assert.throws(() => incompleteBeta(1.5, 1, 1), RangeError);
  assert.throws(() => studentTQuantile(1, 3), RangeError);
  assert.throws(() => studentTCdf(1, 0), RangeError);
});

Deno.test("tInterval: mean +- t(0.975, n - 1) s / sqrt(n); one value has no interval", () => {
  const v = [60, 62, 61];
  const ci = tInterval(v);
  assert.deepEqual(ci.estimate, 61);
  assert.deepEqual(ci.df, 2);
  assertAlmostEquals(ci.high! - 61, 4.302652730 * 1 / Math.sqrt(3), 1e-6);
  assertAlmostEquals(61 - ci.low!, ci.high! - 61, 1e-12);
  assert.deepEqual(tInterval([5]), { estimate: 5, low: null, high: null, df: null });
  assert.throws(() => tInterval([]), RangeError);
});

Deno.test("welchInterval: Welch-Satterthwaite degrees of freedom and half-width", () => {
  const a = [1, 2, 3], b = [4, 5, 6, 7];
  const ci = welchInterval(a, b);
  assert.deepEqual(ci.estimate, 3.5);
  const va = 1 / 3, vb = (5 / 3) / 4;
  const df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3);
  assertAlmostEquals(ci.df!, df, 1e-12);
  assertAlmostEquals(ci.high! - 3.5, studentTQuantile(0.975, df) * Math.sqrt(va + vb), 1e-9);
  assert.ok(ci.low! > 0, "this difference is resolved");
  // swapping the groups flips the interval
  const r = welchInterval(b, a);
  assertAlmostEquals(r.low!, -ci.high!, 1e-12);
  assert.deepEqual(welchInterval([1], [2, 3]).low, null);
  assert.deepEqual(welchInterval([1, 1], [2, 2]), { estimate: 1, low: 1, high: 1, df: null });
});
