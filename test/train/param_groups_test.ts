import assert from "node:assert/strict";
import { addWeightDecay, paramGroupsLrd, type ParamInfo, vitLayerId } from "@lib/train";

const P = (name: string, shape: number[], trainable = true): ParamInfo => ({
  name,
  shape,
  trainable,
});

Deno.test("addWeightDecay: 1-D and .bias names get no decay, frozen ones are left out", () => {
  const g = addWeightDecay(
    [
      P("cls_token", [1, 1, 8]),
      P("blocks.0.norm1.weight", [8]),
      P("blocks.0.attn.qkv.weight", [24, 8]),
      P("mlm_layer.bias", [1, 1, 5]), // not 1-D, but named .bias
      P("pos_embed", [1, 5, 8], false),
      P("head.weight", [3, 8]),
    ],
    0.05,
    ["head.weight"],
  );
  assert.deepEqual(
    g.settings.map((s) => [s.name, s.group, s.weightDecay, s.lrScale]),
    [
      ["cls_token", "decay", 0.05, 1],
      ["blocks.0.norm1.weight", "no_decay", 0, 1],
      ["blocks.0.attn.qkv.weight", "decay", 0.05, 1],
      ["mlm_layer.bias", "no_decay", 0, 1],
      ["head.weight", "no_decay", 0, 1],
    ],
  );
  assert.deepEqual(g.frozen, ["pos_embed"]);
});

Deno.test("vitLayerId places cls/pos/patch at 0, blocks at i+1, the rest at numLayers", () => {
  assert.equal(vitLayerId("cls_token", 5), 0);
  assert.equal(vitLayerId("pos_embed", 5), 0);
  assert.equal(vitLayerId("patch_embed.proj.weight", 5), 0);
  assert.equal(vitLayerId("blocks.3.mlp.fc2.bias", 5), 4);
  assert.equal(vitLayerId("token_emb.word_embeddings.weight", 5), 5);
  assert.equal(vitLayerId("head.bias", 5), 5);
  assert.throws(() => vitLayerId("blocks.7.norm1.weight", 5), {
    name: "RangeError",
    message: 'Cannot place "blocks.7.norm1.weight" in a layer: block index out of 0..4',
  });
});

Deno.test("paramGroupsLrd: lr scale 0.65^(L-id), no decay for 1-D and the no-decay list", () => {
  const g = paramGroupsLrd([
    P("cls_token", [1, 1, 8]),
    P("pos_embed", [1, 5, 8]),
    P("patch_embed.proj.weight", [8, 4, 2, 2]),
    P("blocks.0.attn.qkv.weight", [24, 8]),
    P("blocks.1.norm1.bias", [8]),
    P("head.weight", [3, 8]),
    P("conversion_function.0.weight", [4, 4], false),
  ], { weightDecay: 0.1, layerDecay: 0.65, numLayers: 3 });
  assert.deepEqual(
    g.settings.map((s) => [s.name, s.layerId, s.lrScale, s.weightDecay]),
    [
      ["cls_token", 0, 0.65 ** 3, 0],
      ["pos_embed", 0, 0.65 ** 3, 0],
      ["patch_embed.proj.weight", 0, 0.65 ** 3, 0.1],
      ["blocks.0.attn.qkv.weight", 1, 0.65 ** 2, 0.1],
      ["blocks.1.norm1.bias", 2, 0.65, 0],
      ["head.weight", 3, 1, 0.1],
    ],
  );
  assert.deepEqual(g.frozen, ["conversion_function.0.weight"]);
});

Deno.test("grouping rules refuse duplicate names and bad decay values", () => {
  assert.throws(() => addWeightDecay([P("a", [2]), P("a", [2])], 0.1), {
    name: "TypeError",
    message: 'Cannot group parameters: "a" appears twice',
  });
  assert.throws(() => addWeightDecay([P("a", [2])], -1), { name: "RangeError" });
  assert.throws(
    () => paramGroupsLrd([P("a", [2])], { weightDecay: 0.1, layerDecay: 0, numLayers: 2 }),
    { name: "RangeError", message: "Cannot use layer decay 0: expected a finite number > 0" },
  );
});
