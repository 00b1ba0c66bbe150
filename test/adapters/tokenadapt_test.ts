import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { type HostTensor, readSafetensorsFile } from "@lib/io";
import {
  CONVERSION_TABLE_KEY,
  matchStateDict,
  resolveTokenAdaptConfig,
  StateDictMismatchError,
  TokenAdapt,
  tokenAdaptOfficial,
  tokenAdaptSmall,
} from "@lib/adapters";
import { Fixture, SECTIONS } from "@lib/parity";
import { Rng } from "@lib/random";
import { PARITY_DIR, parityPath } from "../_support/fixtures.ts";

const slow = Deno.env.get("SEITPP_SLOW") === "1";

for (const backend of ["wasm", "cpu"] as const) {
  Deno.test({
    name: `[${backend}] parity section tokenadapt passes (official weights from tokenadapt.ckpt)`,
    // cpu takes ~35 s (1024-token attention in pure JS): opt in with SEITPP_SLOW=1
    ignore: backend === "cpu" && !slow,
    fn: async () => {
      await initBackend({ backend });
      const fx = await Fixture.open(PARITY_DIR);
      const section = SECTIONS.find((s) => s.name === "tokenadapt")!;
      const before = tf.memory().numTensors;
      const results = await (section.run(fx) as Promise<{ quantity: string; ok: boolean }[]>);
      assert.equal(tf.memory().numTensors, before);
      const names = results.map((r) => r.quantity);
      for (
        const q of [
          "state_dict",
          "conversion",
          "transformed56",
          "inversion_logits",
          "inversion_codes",
          "roundtrip_codes",
        ]
      ) assert.ok(names.includes(q), `missing quantity ${q}`);
      for (const r of results) assert.ok(r.ok, JSON.stringify(r));
    },
  });
}

const official = (await readSafetensorsFile(parityPath("tokenadapt.safetensors"))).tensors;

Deno.test("loading reports a missing, an unexpected and a mis-shaped key by name", async () => {
  await initBackend({ backend: "cpu" });
  const t = new Map(official);
  t.delete("reverse_transform.1.bias");
  t.set("reverse_transform.2.weight", official.get("reverse_transform.1.bias")!);
  const w = official.get("conversion_function.0.weight")!;
  t.set("conversion_function.0.weight", { ...w, shape: [32, 384] });
  const before = tf.memory().numTensors;
  assert.throws(
    () => TokenAdapt.fromStateDict(tokenAdaptOfficial(), t, { source: "x.ckpt" }),
    (e: unknown) => {
      assert.ok(e instanceof StateDictMismatchError);
      assert.match(e.message, /Cannot load the state dict "x\.ckpt"/);
      assert.match(e.message, /missing reverse_transform\.1\.bias/);
      assert.match(e.message, /unexpected reverse_transform\.2\.weight/);
      assert.match(
        e.message,
        /"conversion_function\.0\.weight" has shape \[32,384\], expected \[384,32\]/,
      );
      assert.deepEqual(e.report.missing, ["reverse_transform.1.bias"]);
      return true;
    },
  );
  assert.equal(tf.memory().numTensors, before, "a failed load leaks nothing");
  const { model, report } = TokenAdapt.fromStateDict(tokenAdaptOfficial(), t, { strict: false });
  assert.deepEqual(report.unexpected, ["reverse_transform.2.weight"]);
  assert.equal(report.mismatched.length, 1);
  assert.equal(report.matched.length, 34);
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("a sin-cos table that is not the fixed table is refused by name", async () => {
  await initBackend({ backend: "cpu" });
  const t = new Map(official);
  const tab = official.get(CONVERSION_TABLE_KEY)! as HostTensor<"float32">;
  const bad = tab.data.slice();
  bad[7] += 0.01;
  t.set(CONVERSION_TABLE_KEY, { ...tab, data: bad });
  assert.throws(() => TokenAdapt.fromStateDict({}, t), {
    name: "RangeError",
    message: /de_pos_embedding.*not the fixed 2-D sin-cos table/,
  });
});

Deno.test("matchStateDict lists everything and never throws", () => {
  const f = (shape: number[]) => ({
    dtype: "float32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  });
  const r = matchStateDict(
    new Map([["a", [2]], ["b", [3]], ["c", [1, 1]]]),
    new Map([["c", f([1])], ["a", f([2])], ["z", f([4])]]),
  );
  assert.deepEqual(r, {
    missing: ["b"],
    unexpected: ["z"],
    mismatched: [{ key: "c", expected: [1, 1], got: [1] }],
    matched: ["a"],
  });
});

Deno.test("resolveTokenAdaptConfig: official defaults, unknown keys and bad values refused", () => {
  const c = tokenAdaptOfficial();
  assert.deepEqual(c, {
    codebookSize: 391,
    codeDim: 32,
    inputGrid: 32,
    outputGrid: 28,
    width: 384,
    heads: 6,
    headDim: 64,
    mlpDim: 1536,
    depth: 1,
    normEps: 1e-5,
  });
  assert.throws(() => resolveTokenAdaptConfig({ widht: 3 } as never), {
    name: "TypeError",
    message: /Unknown TokenAdapt config key "widht"/,
  });
  assert.throws(() => resolveTokenAdaptConfig({ heads: 0 }), {
    name: "RangeError",
    message: /"heads": 0/,
  });
  assert.throws(() => resolveTokenAdaptConfig({ width: 130 }), RangeError);
  assert.throws(() => resolveTokenAdaptConfig({ depth: "2" as never }), TypeError);
});

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`[${backend}] small TokenAdapt: shapes, wrong input refused, leak-free, gradients reach every parameter`, async () => {
    await initBackend({ backend });
    const cfg = resolveTokenAdaptConfig({ ...tokenAdaptSmall(4, 16, 8), depth: 2 });
    const ta = TokenAdapt.create(cfg, new Rng(1));
    const emb = tf.randomNormal([3, 8, 4, 4], 0, 1, "float32", 5) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const up = ta.convert(emb);
    const logits = ta.invertLogits(up);
    const codes = ta.invert(up);
    assert.deepEqual(up.shape, [3, 8, 8, 8]);
    assert.deepEqual(logits.shape, [3, 16, 16]);
    assert.deepEqual(codes.shape, [3, 4, 4]);
    assert.equal(codes.dtype, "int32");
    tf.dispose([up, logits, codes]);
    assert.equal(tf.memory().numTensors, before);
    assert.throws(() => ta.convert(tf.zeros([1, 8, 5, 5]) as tf.Tensor4D), {
      name: "TypeError",
      message: /expected \[B, 8, 4, 4\] float32, got a float32 tensor of shape \[1,8,5,5\]/,
    });
    const vars = ta.variables();
    assert.equal(vars.length, 2 + 2 * (2 * 11 + 2) + 4 + 2);
    const target = tf.tensor1d(Array.from({ length: 48 }, (_, i) => i % 16), "int32");
    const before2 = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => {
      const l = ta.invertLogits(ta.convert(emb)).reshape([48, 16]);
      return tf.losses.softmaxCrossEntropy(tf.oneHot(target, 16), l) as tf.Scalar;
    }, vars.map((v) => v.variable));
    for (const { name, variable } of vars) {
      const g = grads[variable.name];
      const n = tf.tidy(() => g.abs().sum().dataSync()[0]);
      assert.ok(Number.isFinite(n) && n > 0, `no gradient for ${name}`);
    }
    assert.ok(value.dataSync()[0] > 0);
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before2);
    tf.dispose([emb, target]);
    ta.dispose();
  });
}

Deno.test("save/load round trip keeps the config, the tensors and the outputs", async () => {
  await initBackend({ backend: "cpu" });
  const ta = TokenAdapt.create(tokenAdaptSmall(4, 16, 8), new Rng(2));
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/ta.safetensors`;
    await ta.save(path, { note: "test" });
    const { model, report } = await TokenAdapt.load(path);
    assert.deepEqual(model.config, ta.config);
    assert.equal(report.matched.length, model.expectedKeys().size);
    const emb = tf.randomNormal([2, 8, 4, 4], 0, 1, "float32", 9) as tf.Tensor4D;
    const a = ta.invertLogits(ta.convert(emb)), b = model.invertLogits(model.convert(emb));
    assert.deepEqual(await a.data(), await b.data());
    const sd1 = ta.stateDict(), sd2 = model.stateDict();
    for (const [k, v] of sd1) assert.deepEqual(sd2.get(k)!.data, v.data, k);
    tf.dispose([emb, a, b]);
    model.dispose();
    // loading a file into the wrong geometry names the mismatch
    await assert.rejects(
      () => TokenAdapt.load(path, tokenAdaptSmall(4, 17, 8)),
      StateDictMismatchError,
    );
  } finally {
    ta.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stateDict of the official weights equals the file bit for bit (layout round trip)", async () => {
  await initBackend({ backend: "cpu" });
  const { model } = TokenAdapt.fromStateDict({}, official);
  const sd = model.stateDict();
  const meta = JSON.parse(await Deno.readTextFile(parityPath("meta.json")));
  assert.deepEqual([...sd.keys()], meta.files["tokenadapt.ckpt"].keys, "state-dict order");
  assert.equal(sd.size, official.size);
  for (const [k, v] of official) {
    assert.deepEqual(sd.get(k)!.shape, v.shape, k);
    assert.deepEqual(sd.get(k)!.data, v.data, k);
  }
  let params = 0;
  for (const [k, v] of official) if (!k.endsWith("pos_embedding")) params += v.data.length;
  assert.equal(model.parameterCount(), params);
  assert.equal(params, 3_810_087); // "about 3.8M parameters plus fixed sin-cos tables"
  model.dispose();
});
