import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { BackendUnavailableError, describeBackend, initBackend } from "@lib/backend";

/** The same small numeric checks on every backend: matMul, a batched matMul, softmax, a gradient. */
async function numericChecks(): Promise<void> {
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => {
    const a = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const b = tf.tensor2d([[1, -1, 0.5], [2, 0, -0.5]]);
    const mm = tf.matMul(a, b); // [[5,-1,-0.5],[11,-3,-0.5],[17,-5,-0.5]]
    const bmm = tf.matMul(tf.stack([a, a.mul(2)]), tf.stack([b, b]), false, false).sum([1, 2]);
    const sm = tf.softmax(tf.tensor1d([1, 2, 3]));
    const g = tf.grad((x: tf.Tensor) => tf.sin(x).sum())(tf.tensor1d([0, Math.PI / 3]));
    return [mm, bmm, sm, g];
  });
  const [mm, bmm, sm, g] = await Promise.all(out.map((t) => t.data()));
  tf.dispose(out);
  const close = (got: ArrayLike<number>, want: number[], tol = 1e-5) =>
    want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) <= tol, `${got[i]} vs ${w} at ${i}`));
  close(mm, [5, -1, -0.5, 11, -3, -0.5, 17, -5, -0.5]);
  close(bmm, [22.5, 45]);
  const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
  const z = e[0] + e[1] + e[2];
  close(sm, e.map((v) => v / z));
  close(g, [1, 0.5]);
  assert.equal(tf.memory().numTensors, before);
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`initBackend("${backend}") runs the numeric checks`, async () => {
    const info = await initBackend({ backend });
    assert.equal(info.name, backend);
    assert.equal(tf.getBackend(), backend);
    await numericChecks();
  });
}

const hasAdapter = await (async () => {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  return gpu !== undefined && (await gpu.requestAdapter()) !== null;
})();

Deno.test({
  name: 'initBackend("webgpu") runs the numeric checks on the available adapter',
  ignore: !hasAdapter,
  fn: async () => {
    const info = await initBackend({ backend: "webgpu" });
    assert.equal(info.name, "webgpu");
    assert.match(info.description, /^webgpu \(/);
    await numericChecks();
  },
});

Deno.test('initBackend("auto") reports what it skipped and why', async () => {
  const info = await initBackend({ backend: "auto" });
  assert.equal(info.requested, "auto");
  // tensorflow is not installed here, so it must be listed as skipped with the reason
  assert.ok(info.skipped.some((s) => s.includes('"tensorflow" is unavailable')));
  assert.match(describeBackend(info), /\[auto; skipped: /);
  await numericChecks();
});

Deno.test('initBackend("tensorflow") without tfjs-node says what is missing and what runs instead', async () => {
  await assert.rejects(() => initBackend({ backend: "tensorflow" }), (e: unknown) => {
    assert.ok(e instanceof BackendUnavailableError);
    assert.equal(e.backend, "tensorflow");
    assert.match(
      e.message,
      /^Backend "tensorflow" is unavailable: neither @tensorflow\/tfjs-node-gpu nor tfjs-node is installed\./,
    );
    assert.match(e.message, /To get it: .*tfjs-node-gpu/);
    assert.match(e.message, /What runs instead: --backend webgpu or --backend wasm\.$/);
    return true;
  });
});

Deno.test("initBackend rejects an unknown backend name with a RangeError", async () => {
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    () => initBackend({ backend: "cuda" as any }),
    {
      name: "RangeError",
      message: 'Unknown backend "cuda": expected one of auto, wasm, cpu, webgpu, tensorflow',
    },
  );
});
