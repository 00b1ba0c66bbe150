/**
 * The `cls` parity section on wasm: fine-tune load report, activations, logits, the
 * three losses and every gradient within the fixture's tolerances.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { type ComparisonResult, Fixture } from "@lib/parity";
import { classifierConfigFromFixture, clsSection } from "../../lib/parity/cls.ts";
import { PARITY_DIR } from "../_support/fixtures.ts";

await initBackend({ backend: "wasm" });

Deno.test("parity cls (wasm): load report, activations, logits, losses and every gradient within tolerance", async () => {
  const fx = await Fixture.open(PARITY_DIR);
  const before = tf.memory().numTensors;
  const results: ComparisonResult[] = [];
  for await (const r of clsSection.run(fx) as AsyncIterable<ComparisonResult>) results.push(r);
  const failed = results.filter((r) => !r.ok).map((r) =>
    `${r.quantity}: ${r.error ?? r.worst_ratio}`
  );
  assert.deepEqual(failed, []);
  const q = new Set(results.map((r) => r.quantity));
  for (
    const name of [
      "finetune_load:missing",
      "finetune_load:unexpected",
      "pooled_before_norm",
      "features",
      "logits",
      "loss_soft_target",
      "loss_label_smoothing",
      "loss_cross_entropy",
      "grad:pos_embed",
      "grad:head.weight",
    ]
  ) assert.ok(q.has(name), `${name} was compared`);
  const grads = results.filter((r) => r.quantity.startsWith("grad:")).length;
  assert.equal(grads, (await fx.file("cls_grads.safetensors")).size);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("classifierConfigFromFixture reads sizes and classes from meta.json", async () => {
  const fx = await Fixture.open(PARITY_DIR);
  const dir = await Deno.makeTempDir();
  try {
    const meta = structuredClone(fx.meta) as Record<string, Record<string, unknown>>;
    (meta.config as Record<string, unknown>).cls = { embed_dim: 96, depth: 3, num_heads: 2 };
    (meta.config as Record<string, unknown>).num_classes = 7;
    await Deno.writeTextFile(`${dir}/meta.json`, JSON.stringify(meta));
    const c = classifierConfigFromFixture(await Fixture.open(dir));
    assert.deepEqual([c.embedDim, c.depth, c.numHeads, c.numClasses], [96, 3, 2, 7]);
    assert.equal(c.globalPool, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
