/**
 * Parameter names, layouts and state dicts against the reference checkpoint and
 * fixtures; load reporting; round trips.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { type HostTensor, readSafetensorsFile } from "@lib/io";
import {
  internalToTorch,
  MtmModel,
  mtmSmall,
  mtmTiny,
  ParamStore,
  sincos2d,
  torchToInternal,
} from "@lib/models";
import { Rng } from "@lib/random";
import { parityPath } from "../_support/fixtures.ts";

await initBackend({ backend: "wasm" });
const meta = JSON.parse(await Deno.readTextFile(parityPath("meta.json")));

function tinyCheckpointConfig() {
  const t = meta.checkpoint.tiny_config;
  return mtmSmall({
    embedDim: t.embed_dim,
    depth: t.depth,
    numHeads: t.num_heads,
    decoderEmbedDim: t.decoder_embed_dim,
    decoderDepth: t.decoder_depth,
    decoderNumHeads: t.decoder_num_heads,
  });
}

async function checkpointModelTensors(): Promise<Map<string, HostTensor>> {
  const all = (await readSafetensorsFile(parityPath("checkpoint_tensors.safetensors"))).tensors;
  const out = new Map<string, HostTensor>();
  for (const [k, v] of all) if (k.startsWith("model.")) out.set(k.slice("model.".length), v);
  return out;
}

function assertBitEqual(got: HostTensor, want: HostTensor, what: string): void {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const a = got.data as Float32Array, b = want.data as Float32Array;
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${b[i]}`);
  }
}

Deno.test("MTM parameter names and order equal the reference checkpoint's model keys", () => {
  const model = new MtmModel(tinyCheckpointConfig(), new Rng(0));
  try {
    const tokenAdapt = (n: string) =>
      n.startsWith("conversion_function.") || n.startsWith("reverse_transform.");
    const ref = (meta.checkpoint.model_keys as string[]).filter((n) => !tokenAdapt(n));
    assert.deepEqual(model.params.names(), ref);
  } finally {
    model.dispose();
  }
});

Deno.test("a strict load of the reference checkpoint's model tensors exports them bit for bit", async () => {
  const tensors = await checkpointModelTensors();
  const model = new MtmModel(tinyCheckpointConfig(), new Rng(0));
  const before = tf.memory().numTensors;
  try {
    const report = model.params.loadStateDict(tensors, { strict: true });
    assert.equal(report.loaded.length, tensors.size);
    const exported = model.params.stateDict();
    for (const [name, t] of tensors) assertBitEqual(exported.get(name)!, t, name);
  } finally {
    model.dispose();
  }
  assert.ok(tf.memory().numTensors <= before);
});

Deno.test("sin-cos position tables equal the reference's fixed tables", async () => {
  const params = (await readSafetensorsFile(parityPath("mtm_params.safetensors"))).tensors;
  const ckpt = await checkpointModelTensors();
  const cases: [HostTensor, number][] = [
    [params.get("pos_embed")!, meta.config.mtm.embed_dim],
    [params.get("decoder_pos_embed")!, meta.config.mtm.decoder_embed_dim],
    [ckpt.get("pos_embed")!, meta.checkpoint.tiny_config.embed_dim],
  ];
  for (const [ref, dim] of cases) {
    const grid = Math.round(Math.sqrt(ref.shape[1] - 1));
    const ours = sincos2d(dim, grid, true);
    const r = ref.data as Float32Array;
    assert.equal(ours.length, r.length);
    let worst = 0;
    for (let i = 0; i < r.length; i++) worst = Math.max(worst, Math.abs(ours[i] - r[i]));
    assert.ok(worst <= 1e-6, `sin-cos table D=${dim}: max deviation ${worst}`);
  }
});

Deno.test("loadStateDict reports missing, unexpected and mismatched names; strict throws listing them", () => {
  const model = new MtmModel(mtmTiny(), new Rng(1));
  try {
    const sd = model.params.stateDict();
    sd.delete("norm.weight");
    sd.set("decoder_extra.weight", { dtype: "float32", shape: [2], data: new Float32Array(2) });
    sd.set("cls_token", { dtype: "float32", shape: [1, 1, 7], data: new Float32Array(7) });
    const before = model.params.get("blocks.0.attn.qkv.weight").dataSync().slice();
    const report = model.params.loadStateDict(sd);
    assert.deepEqual(report.missing, ["norm.weight"]);
    assert.deepEqual(report.unexpected, ["decoder_extra.weight"]);
    assert.equal(report.mismatchedShapes.length, 1);
    assert.match(report.mismatchedShapes[0], /^cls_token: got \[1, 1, 7\], expected \[1, 1, 32\]$/);
    assert.deepEqual(model.params.get("blocks.0.attn.qkv.weight").dataSync(), before);
    assert.throws(
      () => model.params.loadStateDict(sd, { strict: true }),
      (e: unknown) =>
        e instanceof TypeError && /missing norm\.weight/.test(e.message) &&
        /unexpected decoder_extra\.weight/.test(e.message) && /cls_token: got/.test(e.message),
    );
  } finally {
    model.dispose();
  }
});

Deno.test("stateDict -> loadStateDict into a differently seeded model gives identical outputs", () => {
  const a = new MtmModel(mtmTiny(), new Rng(1));
  const b = new MtmModel(mtmTiny(), new Rng(2));
  const codes = tf.tensor3d(
    Int32Array.from({ length: 2 * 64 }, (_, i) => (i * 7) % 16),
    [2, 8, 8],
    "int32",
  );
  try {
    const plan = a.randomMasking(2, new Rng(5));
    const la = a.forward(codes, { plan });
    const lb0 = b.forward(codes, { plan });
    assert.notEqual(la.loss.dataSync()[0], lb0.loss.dataSync()[0]);
    b.params.loadStateDict(a.params.stateDict(), { strict: true });
    const lb = b.forward(codes, { plan });
    assert.deepEqual(lb.logits.dataSync(), la.logits.dataSync());
    tf.dispose([
      la.loss,
      la.logits,
      la.mask,
      lb0.loss,
      lb0.logits,
      lb0.mask,
      lb.loss,
      lb.logits,
      lb.mask,
    ]);
  } finally {
    codes.dispose();
    a.dispose();
    b.dispose();
  }
});

Deno.test("layout conversions: linear and conv round-trip and match PyTorch's index order", () => {
  const lin = Float32Array.from({ length: 6 }, (_, i) => i); // torch [out=2, in=3]
  const li = torchToInternal("linear", [2, 3], lin);
  assert.deepEqual([...li], [0, 3, 1, 4, 2, 5]); // [in=3, out=2]
  assert.deepEqual(internalToTorch("linear", [2, 3], li), lin);
  const conv = Float32Array.from({ length: 2 * 3 * 2 * 2 }, (_, i) => i); // [O=2, C=3, 2, 2]
  const ci = torchToInternal("conv", [2, 3, 2, 2], conv);
  // internal row (i*kw + j)*C + c, column o: torch [o, c, i, j]
  assert.equal(ci[((1 * 2 + 0) * 3 + 2) * 2 + 1], conv[((1 * 3 + 2) * 2 + 1) * 2 + 0]);
  assert.deepEqual(internalToTorch("conv", [2, 3, 2, 2], ci), conv);
});

Deno.test("ParamStore refuses duplicates, unknown names and values that do not fit the layout", () => {
  const p = new ParamStore("t");
  try {
    p.add("w", tf.zeros([3, 2]), { shape: [2, 3], layout: "linear" });
    assert.throws(() => p.add("w", tf.zeros([1])), TypeError);
    assert.throws(() => p.get("nope"), RangeError);
    assert.throws(
      () => p.add("v", tf.zeros([2, 3]), { shape: [2, 3], layout: "linear" }),
      TypeError,
    );
    assert.equal(p.count(), 6);
  } finally {
    p.dispose();
  }
});
