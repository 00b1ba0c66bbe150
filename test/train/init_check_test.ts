import assert from "node:assert/strict";
import { checkInitReport, InitMismatchError } from "@lib/train";

const OK = {
  loaded: ["cls_token", "pos_embed", "blocks.0.attn.qkv.weight", "norm.weight"],
  missing: ["head.weight", "head.bias"],
  unexpected: ["mask_token_label", "decoder_embed.weight", "mlm_layer.bias"],
  mismatchedShapes: [] as string[],
};

Deno.test("checkInitReport accepts a matching pre-training: the head fresh, the decoder dropped", () => {
  const r = checkInitReport(OK, "pt/model.safetensors");
  assert.deepEqual(r.fresh, ["head.weight", "head.bias"]);
  assert.deepEqual(r.dropped, ["mask_token_label", "decoder_embed.weight", "mlm_layer.bias"]);
});

Deno.test("checkInitReport names the first mismatched tensor with both shapes", () => {
  const bad = {
    ...OK,
    mismatchedShapes: ["cls_token: got [1,1,16], expected [1,1,32]", "pos_embed: got [..]"],
  };
  assert.throws(() => checkInitReport(bad, "pt/model.safetensors"), (e: Error) => {
    assert.ok(e instanceof InitMismatchError);
    assert.equal(e.source, "pt/model.safetensors");
    assert.equal(
      e.message,
      'Cannot fine-tune from "pt/model.safetensors": it is not a pre-training of this model: ' +
        "tensor cls_token: got [1,1,16], expected [1,1,32] (and 1 more mismatched)",
    );
    return true;
  });
});

Deno.test("checkInitReport refuses encoder names on one side only (another depth)", () => {
  assert.throws(
    () => checkInitReport({ ...OK, missing: ["blocks.1.norm1.weight", "head.weight"] }, "p"),
    /encoder tensor blocks\.1\.norm1\.weight is missing from it \(a shallower/,
  );
  assert.throws(
    () =>
      checkInitReport(
        { ...OK, unexpected: ["blocks.2.mlp.fc1.weight", "blocks.2.mlp.fc1.bias"] },
        "p",
      ),
    /encoder tensor blocks\.2\.mlp\.fc1\.weight has no place in the classifier \(and 1 more\)/,
  );
  assert.throws(
    () => checkInitReport({ ...OK, loaded: [] }, "p"),
    /no tensor name matches the classifier/,
  );
});
