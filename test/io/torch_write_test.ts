import assert from "node:assert/strict";
import {
  bytesOf,
  crc32,
  flattenTensors,
  type HostTensor,
  PyDict,
  readSafetensorsFile,
  readTorch,
  readTorchFile,
  stateDictOf,
  writeSafetensorsFile,
  writeTorch,
  writeTorchFile,
} from "@lib/io";
import { Rng } from "@lib/random";
import { parityPath } from "../_support/fixtures.ts";
import { torchHelper } from "../_support/torch_python.ts";

function f32(shape: number[], rng: Rng): HostTensor<"float32"> {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.normal();
  return { dtype: "float32", shape, data };
}

/** Many tensors of every dtype the formats share, scalars and empty ones (memo > 255). */
function sample(): Map<string, HostTensor> {
  const rng = new Rng(7);
  const m = new Map<string, HostTensor>();
  m.set("aa.bool", { dtype: "bool", shape: [3], data: new Uint8Array([1, 0, 1]) });
  m.set("ab.empty", { dtype: "float32", shape: [0, 3], data: new Float32Array(0) });
  m.set("ac.f16", { dtype: "float16", shape: [2], data: new Uint16Array([0x3c00, 0xfbff]) });
  m.set("ad.f64", { dtype: "float64", shape: [], data: new Float64Array([Math.PI]) });
  m.set("ae.i32", {
    dtype: "int32",
    shape: [2, 2],
    data: new Int32Array([-1, 2, -3, 2 ** 31 - 1]),
  });
  m.set("af.i64", { dtype: "int64", shape: [2], data: new BigInt64Array([-(2n ** 62n), 5n]) });
  m.set("ag.u8", { dtype: "uint8", shape: [4], data: new Uint8Array([0, 1, 254, 255]) });
  for (let i = 0; i < 40; i++) {
    m.set(`blocks.${String(i).padStart(2, "0")}.w`, f32([3, 2, 2, 5], rng));
  }
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : 1)));
}

Deno.test("writeTorch: byte for byte what torch 1.13 saves to a buffer (memo past 255, every dtype)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors = sample();
    await writeSafetensorsFile(`${dir}/in.safetensors`, tensors);
    await torchHelper("save-ref", `${dir}/in.safetensors`, `${dir}/ref.pth`);
    const ref = await Deno.readFile(`${dir}/ref.pth`);
    const ours = writeTorch(new PyDict("dict", [["model", stateDictOf(tensors)]]));
    assert.equal(ours.length, ref.length);
    assert.ok(ours.every((b, i) => b === ref[i]), "bytes differ");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeTorch: read back by readTorch with identical tensors and values", () => {
  const tensors = sample();
  const value = new PyDict("dict", [
    ["model", stateDictOf(tensors)],
    ["epoch", 3],
    ["lr", 1.5e-4],
    ["big", 2n ** 70n],
    ["neg", -70000],
    ["name", "é ✓"],
    ["flags", [true, false, null]],
    ["pair", Object.freeze([1, 2.5])],
    ["quad", Object.freeze([1, 2, 3, 4])],
  ]);
  const { tensors: got, values } = flattenTensors(readTorch(writeTorch(value)));
  for (const [k, t] of tensors) {
    const g = got.get(`model.${k}`)!;
    assert.equal(g.dtype, t.dtype, k);
    assert.deepEqual(g.shape, t.shape, k);
    assert.deepEqual(bytesOf(g.data), bytesOf(t.data), k);
  }
  assert.deepEqual(values, {
    epoch: 3,
    lr: 1.5e-4,
    big: (2n ** 70n).toString(),
    neg: -70000,
    name: "é ✓",
    flags: [true, false, null],
    pair: [1, 2.5],
    quad: [1, 2, 3, 4],
  });
});

Deno.test("writeTorch: a parity checkpoint's model re-written reads back bit-identical", async () => {
  const want = (await readSafetensorsFile(parityPath("mtm_params.safetensors"))).tensors;
  const bytes = writeTorch(new PyDict("dict", [["model", stateDictOf(want)]]));
  // every record (central directory) starts its data on a 64-byte boundary, CRC right
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const eocd = bytes.length - 22;
  assert.equal(dv.getUint32(eocd, true), 0x06054b50);
  const count = dv.getUint16(eocd + 10, true);
  assert.equal(count, want.size + 2);
  for (let i = 0, at = dv.getUint32(eocd + 16, true); i < count; i++) {
    const crc = dv.getUint32(at + 16, true), size = dv.getUint32(at + 24, true);
    const nameLen = dv.getUint16(at + 28, true), local = dv.getUint32(at + 42, true);
    const data = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    assert.equal(data % 64, 0);
    assert.equal(crc32(bytes.subarray(data, data + size)), crc);
    at += 46 + nameLen;
  }
  const got = flattenTensors(readTorch(bytes)).tensors;
  for (const [k, t] of want) {
    assert.deepEqual(bytesOf(got.get(`model.${k}`)!.data), bytesOf(t.data), k);
  }
});

Deno.test("writeTorchFile: the archive is named after the file, as torch names it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeTorchFile(`${dir}/my-model.pth`, stateDictOf(sample()));
    const text = new TextDecoder("latin1").decode(await Deno.readFile(`${dir}/my-model.pth`));
    assert.ok(text.includes("my-model/data.pkl") && !text.includes("archive/"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeTorch: refuses what it cannot write, naming the path", () => {
  const t = { dtype: "float32" as const, shape: [3], data: new Float32Array(2) };
  assert.throws(() => writeTorch(stateDictOf([["w.x", t]])), /"w\.x" holds 2 elements/);
  assert.throws(() => writeTorch(new PyDict("dict", [["s", new Set([1])]])), /"s" is a set/);
  assert.throws(
    () => writeTorch(new PyDict("argparse.Namespace", [["a", 1]])),
    /is a argparse\.Namespace/,
  );
  const withAttrs = new PyDict("dict", [["a", 1]]);
  withAttrs.attributes.set("x", 1);
  assert.throws(() => writeTorch(withAttrs), /"" is a dict with attributes \(x\)/);
  const cyc: unknown[] = [];
  cyc.push(cyc);
  assert.throws(() => writeTorch(cyc as never), /contains itself/);
});

Deno.test("writeTorch: a state dict read from torch keeps its _metadata; torch.load(weights_only=True) reads it bit-exact", async () => {
  const ckpt = await readTorchFile(parityPath("checkpoint.pth")) as PyDict;
  const model = ckpt.get("model") as PyDict;
  assert.ok(model.attributes.has("_metadata"));
  const dir = await Deno.makeTempDir();
  try {
    await writeTorchFile(`${dir}/m.pth`, new PyDict("dict", [["model", model], ["epoch", 0]]));
    const back = readTorch(await Deno.readFile(`${dir}/m.pth`)) as PyDict;
    assert.deepEqual(
      flattenTensors((back.get("model") as PyDict).attributes.get("_metadata")!).values,
      flattenTensors(model.attributes.get("_metadata")!).values,
    );
    await writeSafetensorsFile(`${dir}/ref.safetensors`, flattenTensors(model).tensors);
    const check = JSON.parse(await torchHelper("check", `${dir}/m.pth`, `${dir}/ref.safetensors`));
    assert.deepEqual([check.mismatched, check.unexpected, check.others], [[], [], ["epoch"]]);
    assert.equal(check.metadata, (model.attributes.get("_metadata") as PyDict).size);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
