import assert from "node:assert/strict";
import {
  bytesOf,
  flattenTensors,
  type HostTensor,
  PyDict,
  type PyValue,
  readSafetensorsFile,
  readTorch,
  readTorchFile,
  torchToSafetensors,
  unpickle,
  UnsafePickleError,
} from "@lib/io";
import { parityPath } from "../_support/fixtures.ts";
import { f32Bytes, pickle, type PV, tensorPV, torchLegacy, torchZip } from "./_pickler.ts";

const meta = JSON.parse(await Deno.readTextFile(parityPath("meta.json")));

function assertBitIdentical(got: Map<string, HostTensor>, want: Map<string, HostTensor>) {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, w] of want) {
    const g = got.get(name)!;
    assert.equal(g.dtype, w.dtype, name);
    assert.deepEqual(g.shape, w.shape, name);
    assert.deepEqual(bytesOf(g.data), bytesOf(w.data), name);
  }
}

Deno.test("codebook.ckpt (zip) and codebook_legacy.ckpt give codebook.safetensors bit for bit", async () => {
  const want = (await readSafetensorsFile(parityPath("codebook.safetensors"))).tensors;
  for (const f of ["codebook.ckpt", "codebook_legacy.ckpt"]) {
    const v = await readTorchFile(parityPath(f));
    const { tensors, values } = flattenTensors(v, { rootName: "codebook" });
    assert.equal(values, undefined);
    assertBitIdentical(tensors, want);
    assert.equal((v as HostTensor).dtype, "float32");
  }
});

Deno.test("tokenadapt.ckpt gives tokenadapt.safetensors bit for bit, keys in state_dict order", async () => {
  const v = await readTorchFile(parityPath("tokenadapt.ckpt"));
  assert.ok(v instanceof PyDict);
  assert.equal(v.pyClass, "collections.OrderedDict");
  assert.deepEqual([...v.keys()], meta.files["tokenadapt.ckpt"].keys);
  const want = (await readSafetensorsFile(parityPath("tokenadapt.safetensors"))).tensors;
  assertBitIdentical(flattenTensors(v).tensors, want);
});

Deno.test("checkpoint.pth: every tensor bit for bit, and epoch, scaler, args, param_groups as meta.json", async () => {
  const v = await readTorchFile(parityPath("checkpoint.pth"));
  const { tensors, values } = flattenTensors(v);
  const want = (await readSafetensorsFile(parityPath("checkpoint_tensors.safetensors"))).tensors;
  assertBitIdentical(tensors, want);
  const m = meta.checkpoint;
  const j = values as Record<string, Record<string, unknown>>;
  assert.deepEqual(Object.keys(j), ["model", "optimizer", "epoch", "scaler", "args"]);
  assert.equal(j.epoch, m.epoch);
  assert.deepEqual(j.scaler, m.scaler);
  assert.deepEqual(j.args, m.args);
  assert.deepEqual(j.optimizer, { param_groups: m.optimizer_param_groups });
  assert.deepEqual(Object.keys(j.model._metadata as object), m.model_metadata_keys);

  // the Python structure itself: key order and key types
  assert.ok(v instanceof PyDict);
  const model = v.get("model") as PyDict;
  assert.equal(model.pyClass, "collections.OrderedDict");
  assert.deepEqual([...model.keys()], m.model_keys);
  assert.ok(model.attributes.get("_metadata") instanceof PyDict);
  const state = (v.get("optimizer") as PyDict).get("state") as PyDict;
  assert.deepEqual([...state.keys()], Array.from({ length: 43 }, (_, i) => i)); // int keys
  assert.equal(state.get("0"), undefined);
  const step = (state.get(0) as PyDict).get("step") as HostTensor;
  assert.deepEqual(step.shape, []);
  const groups = (v.get("optimizer") as PyDict).get("param_groups") as PyDict[];
  const betas = groups[0].get("betas") as PyValue[];
  assert.ok(Array.isArray(betas) && Object.isFrozen(betas)); // a tuple
  assert.equal((v.get("args") as PyDict).pyClass, "argparse.Namespace");
});

Deno.test("malicious.ckpt is refused with UnsafePickleError naming os.system", async () => {
  const path = parityPath("malicious.ckpt");
  await assert.rejects(() => readTorchFile(path), (e: Error) => {
    assert.ok(e instanceof UnsafePickleError);
    assert.equal(e.name, "UnsafePickleError");
    assert.equal(e.message, `Refusing "${path}": global os.system is not allowed`);
    assert.equal(e.global, "os.system");
    return true;
  });
  const bytes = await Deno.readFile(path);
  assert.throws(() => readTorch(bytes, { source: "malicious.ckpt" }), {
    name: "UnsafePickleError",
    message: 'Refusing "malicious.ckpt": global os.system is not allowed',
  });
});

Deno.test("a zip checkpoint smuggling a global (STACK_GLOBAL builtins.eval) is refused", () => {
  // protocol 4 STACK_GLOBAL: SHORT_BINUNICODE "builtins", SHORT_BINUNICODE "eval", STACK_GLOBAL
  const evil: PV = {
    reduce: [{
      raw: [0x8c, 8, ...new TextEncoder().encode("builtins"), 0x8c, 4, 101, 118, 97, 108, 0x93],
    }, [
      "1+1",
    ]],
  };
  assert.throws(() => readTorch(torchZip({ dict: [["x", evil]] }, {}), { source: "e.pth" }), {
    name: "UnsafePickleError",
    message: 'Refusing "e.pth:archive/data.pkl": global builtins.eval is not allowed',
  });
  // torch classes outside the list are refused too
  assert.throws(
    () => unpickle(pickle({ global: "torch.nn Linear" }), { source: "l.pkl" }),
    {
      name: "UnsafePickleError",
      message: 'Refusing "l.pkl": global torch.nn.Linear is not allowed',
    },
  );
});

Deno.test("strided, offset and broadcast views are materialized in row-major order", () => {
  const storage = Array.from({ length: 12 }, (_, i) => i);
  const obj: PV = {
    dict: [
      // a transposed [3, 4] view: size (4, 3), stride (1, 4)
      ["t", tensorPV("0", "FloatStorage", 12, 0, [4, 3], [1, 4])],
      // offset 5, size (2, 2), stride (4, 1): elements 5, 6, 9, 10
      ["o", tensorPV("0", "FloatStorage", 12, 5, [2, 2], [4, 1])],
      // broadcast: size (2, 3), stride (0, 1) from offset 2
      ["b", tensorPV("0", "FloatStorage", 12, 2, [2, 3], [0, 1])],
      // a contiguous slice with offset, and a scalar
      ["c", tensorPV("0", "FloatStorage", 12, 7, [5], [1])],
      ["s", tensorPV("0", "FloatStorage", 12, 11, [], [])],
      ["e", tensorPV("0", "FloatStorage", 12, 0, [0, 3], [3, 1])],
    ],
  };
  const v = readTorch(torchZip(obj, { "0": f32Bytes(storage) })) as PyDict;
  const get = (k: string) => Array.from((v.get(k) as HostTensor).data as Float32Array);
  assert.deepEqual(get("t"), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
  assert.deepEqual((v.get("t") as HostTensor).shape, [4, 3]);
  assert.deepEqual(get("o"), [5, 6, 9, 10]);
  assert.deepEqual(get("b"), [2, 3, 4, 2, 3, 4]);
  assert.deepEqual(get("c"), [7, 8, 9, 10, 11]);
  assert.deepEqual(get("s"), [11]);
  assert.deepEqual((v.get("s") as HostTensor).shape, []);
  assert.deepEqual(get("e"), []);
  // each tensor owns its data
  ((v.get("c") as HostTensor).data as Float32Array)[0] = -1;
  assert.equal(get("t")[0], 0);
});

Deno.test("every storage dtype keeps its dtype and bits; big-endian zips are swapped", () => {
  const i64 = new BigInt64Array([-(2n ** 40n), 3n]);
  const cases: [string, string, Uint8Array, number][] = [
    ["DoubleStorage", "float64", new Uint8Array(new Float64Array([Math.PI, -0]).buffer), 2],
    ["HalfStorage", "float16", new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer), 2],
    ["BFloat16Storage", "bfloat16", new Uint8Array(new Uint16Array([0x3f80, 1]).buffer), 2],
    ["LongStorage", "int64", new Uint8Array(i64.buffer), 2],
    ["IntStorage", "int32", new Uint8Array(new Int32Array([-5, 7]).buffer), 2],
    ["ShortStorage", "int16", new Uint8Array(new Int16Array([-5, 7]).buffer), 2],
    ["CharStorage", "int8", new Uint8Array([0xff, 7]), 2],
    ["ByteStorage", "uint8", new Uint8Array([0xff, 7]), 2],
    ["BoolStorage", "bool", new Uint8Array([1, 0]), 2],
  ];
  for (const [cls, dtype, bytes, n] of cases) {
    const t = readTorch(torchZip(tensorPV("k", cls, n, 0, [n], [1]), { k: bytes })) as HostTensor;
    assert.equal(t.dtype, dtype, cls);
    assert.deepEqual(bytesOf(t.data), bytes, cls);
    // the same file written big-endian
    const size = bytes.length / n;
    const be = bytes.slice();
    for (let i = 0; i < be.length; i += size) be.subarray(i, i + size).reverse();
    const z = torchZip(tensorPV("k", cls, n, 0, [n], [1]), { k: be }, { byteorder: "big" });
    assert.deepEqual(bytesOf((readTorch(z) as HostTensor).data), bytes, `${cls} big-endian`);
  }
});

Deno.test("legacy format: storage views, several storages, shared storages", () => {
  const a = f32Bytes([0, 1, 2, 3, 4, 5]);
  const b = new Uint8Array(new BigInt64Array([10n, 20n]).buffer);
  const obj: PV = {
    list: [
      tensorPV("100", "FloatStorage", 6, 0, [2, 3], [3, 1]),
      // a view of storage "100" starting at element 2, 4 elements long
      tensorPV("100", "FloatStorage", 6, 1, [3], [1], ["101", 2, 4]),
      tensorPV("200", "LongStorage", 2, 0, [2], [1]),
      tensorPV("100", "FloatStorage", 6, 0, [3, 2], [1, 3]),
    ],
  };
  const v = readTorch(torchLegacy(obj, [["100", 6, a], ["200", 2, b]])) as HostTensor[];
  assert.deepEqual(Array.from(v[0].data as Float32Array), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(Array.from(v[1].data as Float32Array), [3, 4, 5]);
  assert.deepEqual(Array.from(v[2].data as BigInt64Array), [10n, 20n]);
  assert.deepEqual(Array.from(v[3].data as Float32Array), [0, 3, 1, 4, 2, 5]);
  const { tensors } = flattenTensors(v);
  assert.deepEqual([...tensors.keys()], ["0", "1", "2", "3"]);
});

Deno.test("plain values: ints big and small, floats, strings, bytes, None, sets, Namespace", () => {
  const obj: PV = {
    dict: [
      [0, "int key"],
      ["0", "str key"],
      ["big", 2n ** 70n],
      ["neg", -(2n ** 63n)],
      ["f", { float: 0.1 }],
      ["nan", { float: NaN }],
      ["inf", { float: -Infinity }],
      ["none", null],
      ["bytes", new Uint8Array([1, 2, 255])],
      ["set", { reduce: [{ global: "builtins set" }, [{ list: [1, 2] }]] }],
      ["ns", {
        build: [{ newobj: [{ global: "argparse Namespace" }, []] }, { dict: [["lr", 0.5]] }],
      }],
      ["dtype", { global: "torch float16" }],
      ["device", { reduce: [{ global: "torch device" }, ["cuda", 1]] }],
      ["od", { reduce: [{ global: "collections OrderedDict" }, [{ list: [["a", 1], ["b", 2]] }]] }],
    ],
  };
  const v = readTorch(torchZip(obj, {})) as PyDict;
  assert.equal(v.get(0), "int key");
  assert.equal(v.get("0"), "str key");
  assert.equal(v.get("big"), 2n ** 70n);
  assert.equal(v.get("neg"), -(2n ** 63n));
  assert.equal(v.get("f"), 0.1);
  assert.deepEqual(v.get("set"), new Set([1, 2]));
  const ns = v.get("ns") as PyDict;
  assert.equal(ns.pyClass, "argparse.Namespace");
  assert.equal(ns.get("lr"), 0.5);
  assert.equal(v.get("dtype"), "torch.float16");
  assert.equal(v.get("device"), "cuda:1");
  assert.deepEqual([...(v.get("od") as PyDict).entries()], [["a", 1], ["b", 2]]);
  const { values, tensors } = flattenTensors(v);
  assert.equal(tensors.size, 0);
  assert.deepEqual(values, {
    "0": "str key", // the int key 0 and the str key "0" meet in JSON: the later one wins
    big: "1180591620717411303424",
    neg: "-9223372036854775808",
    f: 0.1,
    nan: "NaN",
    inf: "-Infinity",
    none: null,
    bytes: { __bytes__: "AQL/" },
    set: [1, 2],
    ns: { lr: 0.5 },
    dtype: "torch.float16",
    device: "cuda:1",
    od: { a: 1, b: 2 },
  });
});

Deno.test("torchToSafetensors: one metadata key per top-level entry, or 'value'", async () => {
  const v = await readTorchFile(parityPath("checkpoint.pth"));
  const { tensors, metadata } = torchToSafetensors(v);
  assert.equal(tensors.size, 174);
  assert.deepEqual(Object.keys(metadata), ["model", "optimizer", "epoch", "scaler", "args"]);
  assert.equal(metadata.epoch, "0");
  assert.deepEqual(JSON.parse(metadata.args), meta.checkpoint.args);
  const list = torchToSafetensors(readTorch(torchZip({ list: [1, "a"] }, {})));
  assert.deepEqual(list.metadata, { value: '[1,"a"]' });
});

Deno.test("malformed torch files are SyntaxErrors naming the file and what is wrong", () => {
  const t = tensorPV("0", "FloatStorage", 4, 0, [4], [1]);
  const s = { "0": f32Bytes([1, 2, 3, 4]) };
  const cases: [Uint8Array, string][] = [
    [
      torchZip(t, s, { omit: ["data.pkl"] }),
      'Cannot read torch file "f.pth": zip entry "<archive>/data.pkl" is missing',
    ],
    [
      torchZip(t, s, { omit: ["data/0"] }),
      'Cannot read torch file "f.pth": zip entry "archive/data/0" is missing',
    ],
    [
      torchZip(tensorPV("0", "FloatStorage", 4, 1, [4], [1]), s),
      'Cannot read torch file "f.pth": tensor of size [4], stride [1], offset 1 runs past storage "0" of 4 elements',
    ],
    [
      torchZip(tensorPV("0", "FloatStorage", 8, 0, [4], [1]), s),
      'Cannot read torch file "f.pth": storage "0" holds 16 bytes, 8 float32 need 32',
    ],
    [
      torchZip(tensorPV("0", "FloatStorage", 4, 0, [2], [1, 1]), s),
      'Cannot read torch file "f.pth": tensor size [2] and stride [1,1] differ in rank',
    ],
    [
      torchZip(t, s, { byteorder: "middle" }),
      'Cannot read torch file "f.pth": unknown byteorder "middle"',
    ],
    [
      torchZip({ reduce: [{ global: "torch FloatStorage" }, []] }, {}),
      'Cannot unpickle "f.pth:archive/data.pkl": REDUCE of torch.FloatStorage, which is not callable at byte 24',
    ],
    [
      new Uint8Array([0x50, 0x4b, 3, 4, 0, 0, 0]),
      'Cannot read torch file "f.pth": no end-of-central-directory record',
    ],
    [
      pickle({ dict: [] }),
      'Cannot read "f.pth": not a torch.save file (a pickle without the legacy magic number)',
    ],
    [
      torchLegacy(t, [["0", 4, f32Bytes([1, 2, 3])]]),
      'Cannot read torch file "f.pth": storage "0" claims 4 elements, more than the 12 bytes left',
    ],
    [
      torchLegacy(t, []),
      'Cannot read torch file "f.pth": storage "0" is not in the storage list',
    ],
    [
      new Uint8Array(0),
      'Cannot read "f.pth": not a torch.save file (neither a zip archive nor a pickle; it is empty)',
    ],
    [
      new Uint8Array([0x80, 2, 0xff]),
      'Cannot read "f.pth": not a torch.save file (its first pickle does not parse: unknown opcode 0xff at byte 2)',
    ],
    [
      new Uint8Array([0x80, 2, 0x58, 0xff, 0xff, 0, 0, 0x2e]),
      'Cannot read "f.pth": not a torch.save file (its first pickle does not parse: 65535 bytes needed but only 1 remain at byte 2)',
    ],
    [
      new Uint8Array([0x80, 2, 0x2e]),
      'Cannot read "f.pth": not a torch.save file (its first pickle does not parse: stack underflow at byte 2)',
    ],
  ];
  for (const [bytes, message] of cases) {
    assert.throws(() => readTorch(bytes, { source: "f.pth" }), { name: "SyntaxError", message });
  }
});

Deno.test("a forged zip directory whose entries overlap is refused before copying", () => {
  const z = torchZip(tensorPV("0", "FloatStorage", 256, 0, [256], [1]), {
    "0": f32Bytes(new Array(256).fill(1)),
  });
  const v = new DataView(z.buffer);
  let n = 0;
  for (let p = 0; p + 46 <= z.length; p++) {
    if (v.getUint32(p, true) === 0x02014b50) {
      v.setUint32(p + 20, z.length >> 1, true); // compressed size
      v.setUint32(p + 24, z.length >> 1, true); // uncompressed size
      n++;
    }
  }
  assert.equal(n, 3); // data.pkl, data/0, version
  assert.throws(() => readTorch(z, { source: "o.pth" }), {
    name: "SyntaxError",
    message:
      `Cannot read torch file "o.pth": zip entries claim more than the ${z.length}-byte file holds`,
  });
});

Deno.test("refused global names are shown escaped and shortened, on one line", () => {
  const name = "evil\r\u0000" + "x".repeat(100);
  const bytes = new Uint8Array([0x80, 2, 0x63, ...new TextEncoder().encode(`os\n${name}\n`), 0x2e]);
  assert.throws(() => readTorch(bytes, { source: "w.pkl" }), {
    name: "UnsafePickleError",
    message: `Refusing "w.pkl": global ${
      JSON.stringify(`os.${name}`.slice(0, 60) + "...")
    } is not allowed`,
  });
});

Deno.test("a broadcast view expanding past 64 MiB is a RangeError, before allocating", () => {
  const huge = tensorPV("0", "FloatStorage", 1, 0, [1 << 14, 1 << 12], [0, 0]);
  assert.throws(() => readTorch(torchZip(huge, { "0": f32Bytes([1]) }), { source: "h.pth" }), {
    name: "RangeError",
    message:
      'Cannot read torch file "h.pth": a view of size [16384,4096] over storage "0" of 1 elements expands past 67108864 bytes',
  });
});

Deno.test("flattenTensors refuses cycles and name clashes with a TypeError", () => {
  const l: PyValue[] = [];
  l.push(l);
  assert.throws(() => flattenTensors(new PyDict("dict", [["a", l]])), {
    name: "TypeError",
    message: 'Cannot flatten: "a.0" contains itself',
  });
  const w = { dtype: "uint8" as const, shape: [1], data: new Uint8Array(1) };
  const clash = new PyDict("dict", [["a.b", w], ["a", new PyDict("dict", [["b", w]])]]);
  assert.throws(() => flattenTensors(clash), {
    name: "TypeError",
    message: 'Cannot flatten: two tensors are named "a.b"',
  });
  // a shared (not cyclic) tensor is listed under each name
  const shared = flattenTensors(new PyDict("dict", [["x", w], ["y", [w]]]));
  assert.deepEqual([...shared.tensors.keys()], ["x", "y.0"]);
  assert.deepEqual(shared.values, undefined);
});

Deno.test("the unpickler reads protocol 4/5 opcodes (FRAME, MEMOIZE, SHORT_BINUNICODE, sets)", () => {
  // pickle.dumps({'a': [1, 2.5, 'x'], 'b': (b'\x00', None, True), 'c': {1, 2}}, protocol=5)
  // plus frozenset and bytearray, written by hand below
  const b = new Uint8Array([
    0x80,
    5,
    0x95,
    0x3c,
    0,
    0,
    0,
    0,
    0,
    0,
    0, // PROTO 5, FRAME
    0x7d,
    0x94, // EMPTY_DICT MEMOIZE
    0x28, // MARK
    0x8c,
    1,
    0x61,
    0x94, // 'a'
    0x5d,
    0x94,
    0x28,
    0x4b,
    1,
    0x47,
    0x40,
    4,
    0,
    0,
    0,
    0,
    0,
    0,
    0x8c,
    1,
    0x78,
    0x94,
    0x65, // [1, 2.5, 'x']
    0x8c,
    1,
    0x62,
    0x94, // 'b'
    0x43,
    1,
    0,
    0x94,
    0x4e,
    0x88,
    0x87,
    0x94, // (b'\x00', None, True)
    0x8c,
    1,
    0x63,
    0x94, // 'c'
    0x8f,
    0x94,
    0x28,
    0x4b,
    1,
    0x4b,
    2,
    0x90, // {1, 2}
    0x8c,
    1,
    0x64,
    0x94, // 'd'
    0x28,
    0x4b,
    3,
    0x91,
    0x94, // frozenset({3})
    0x8c,
    1,
    0x65,
    0x94, // 'e'
    0x96,
    2,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    7,
    8,
    0x94, // bytearray(b'\x07\x08')
    0x8c,
    1,
    0x66,
    0x94,
    0x68,
    2, // 'f': memo[2] (the list)
    0x75,
    0x2e, // SETITEMS STOP
  ]);
  const v = unpickle(b).value as PyDict;
  assert.deepEqual(v.get("a"), [1, 2.5, "x"]);
  assert.deepEqual(v.get("b"), [new Uint8Array([0]), null, true]);
  assert.ok(Object.isFrozen(v.get("b")));
  assert.deepEqual(v.get("c"), new Set([1, 2]));
  assert.deepEqual(v.get("d"), new Set([3]));
  assert.deepEqual(v.get("e"), new Uint8Array([7, 8]));
  assert.equal(v.get("f"), v.get("a")); // the same list object, through the memo
});
