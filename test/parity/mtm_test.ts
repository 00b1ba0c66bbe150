/**
 * The `mtm` parity section on wasm: every comparison within the fixture's tolerances,
 * and the model is built from meta.json (not from constants).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { type ComparisonResult, Fixture } from "@lib/parity";
import { mtmConfigFromFixture, mtmSection } from "../../lib/parity/mtm.ts";
import { PARITY_DIR } from "../_support/fixtures.ts";

await initBackend({ backend: "wasm" });

Deno.test("parity mtm (wasm): masks, activations, logits, losses and every gradient within tolerance", async () => {
  const fx = await Fixture.open(PARITY_DIR);
  const before = tf.memory().numTensors;
  const results: ComparisonResult[] = [];
  for await (const r of mtmSection.run(fx) as AsyncIterable<ComparisonResult>) results.push(r);
  const failed = results.filter((r) => !r.ok).map((r) =>
    `${r.quantity}: ${r.error ?? r.worst_ratio}`
  );
  assert.deepEqual(failed, []);
  const q = new Set(results.map((r) => r.quantity));
  for (
    const name of [
      "token_drop_mask",
      "token_all_mask",
      "act_token_emb",
      "latent",
      "act_decoder_norm",
      "logits",
      "loss_s0",
      "loss_s01",
      "loss_bce",
      "grad:token_emb.word_embeddings.weight",
      "grad:mask_token_label",
    ]
  ) assert.ok(q.has(name), `${name} was compared`);
  const grads = results.filter((r) => r.quantity.startsWith("grad:")).length;
  assert.equal(grads, (await fx.file("mtm_grads.safetensors")).size);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("mtmConfigFromFixture reads sizes from meta.json", async () => {
  const fx = await Fixture.open(PARITY_DIR);
  const dir = await Deno.makeTempDir();
  try {
    const meta = structuredClone(fx.meta) as Record<
      string,
      Record<string, Record<string, unknown>>
    >;
    meta.config.mtm = {
      embed_dim: 64,
      depth: 2,
      num_heads: 4,
      decoder_embed_dim: 48,
      decoder_depth: 3,
      decoder_num_heads: 6,
    };
    meta.config.mtm_fixed.img_size = 16;
    await Deno.writeTextFile(`${dir}/meta.json`, JSON.stringify(meta));
    const c = mtmConfigFromFixture(await Fixture.open(dir));
    assert.equal(c.embedDim, 64);
    assert.equal(c.depth, 2);
    assert.equal(c.numHeads, 4);
    assert.equal(c.decoderEmbedDim, 48);
    assert.equal(c.decoderDepth, 3);
    assert.equal(c.decoderNumHeads, 6);
    assert.equal(c.gridSide, 16);
    assert.equal(c.mlmNormEps, 1e-5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
