import assert from "node:assert/strict";
import { gzip, readNpy, readSafetensors, writeNpy, writeSafetensors } from "@lib/io";

import { parityPath } from "../_support/fixtures.ts";

Deno.test("readNpy reads the gzipped int64 index of the parity token file", async () => {
  const t = readNpy(await Deno.readFile(parityPath("tiny-train-token.index.npy.gz")));
  assert.equal(t.dtype, "int64");
  assert.deepEqual(t.shape, [51]);
  assert.equal((t.data as BigInt64Array)[1], 1533n);
});

Deno.test("writeNpy -> readNpy round-trips every dtype and shape, also gzipped", () => {
  const cases = [
    { dtype: "float32" as const, shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, -6.5]) },
    { dtype: "float64" as const, shape: [], data: new Float64Array([Math.PI]) },
    { dtype: "int64" as const, shape: [3], data: new BigInt64Array([1n, -2n, 2n ** 40n]) },
    { dtype: "int32" as const, shape: [1, 1, 2], data: new Int32Array([7, -7]) },
    { dtype: "uint8" as const, shape: [0], data: new Uint8Array(0) },
    { dtype: "int16" as const, shape: [2], data: new Int16Array([-300, 300]) },
    { dtype: "bool" as const, shape: [2], data: new Uint8Array([0, 1]) },
  ];
  for (const c of cases) {
    for (const bytes of [writeNpy(c), gzip(writeNpy(c))]) {
      const r = readNpy(bytes);
      assert.equal(r.dtype, c.dtype);
      assert.deepEqual(r.shape, c.shape);
      assert.deepEqual(
        Array.from(r.data as ArrayLike<unknown>),
        Array.from(c.data as ArrayLike<unknown>),
      );
    }
  }
  // the header keeps the data 64-byte aligned, as numpy requires
  const b = writeNpy(cases[0]);
  assert.equal((b.length - 24) % 64, 0);
});

Deno.test("readNpy converts big-endian and Fortran-order arrays", () => {
  const enc = (h: string, data: number[]) => {
    const hb = new TextEncoder().encode(h.padEnd(118) + "\n");
    return new Uint8Array([0x93, 78, 85, 77, 80, 89, 1, 0, hb.length, 0, ...hb, ...data]);
  };
  const be = readNpy(
    enc("{'descr': '>i2', 'fortran_order': False, 'shape': (2,), }", [1, 2, 0, 3]),
  );
  assert.deepEqual(Array.from(be.data as Int16Array), [258, 3]);
  const f = readNpy(
    enc("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }", [1, 4, 2, 5, 3, 6]),
  );
  assert.deepEqual(Array.from(f.data as Uint8Array), [1, 2, 3, 4, 5, 6]);
});

Deno.test("readNpy rejects a wrong header with a SyntaxError naming the file", () => {
  assert.throws(() => readNpy(new Uint8Array(20), { source: "x.npy" }), {
    name: "SyntaxError",
    message: 'Cannot read .npy "x.npy": missing the \\x93NUMPY magic',
  });
  const good = writeNpy({ dtype: "int64", shape: [4], data: new BigInt64Array(4) });
  assert.throws(() => readNpy(good.subarray(0, good.length - 20), { source: "i.npy" }), {
    name: "SyntaxError",
    message: 'Cannot read .npy "i.npy": data holds 12 bytes, shape [4] of int64 needs 32',
  });
});

Deno.test("safetensors round trip keeps dtypes, shapes and metadata; names sorted", () => {
  const t = new Map([
    ["b", { dtype: "int64" as const, shape: [2], data: new BigInt64Array([3n, 4n]) }],
    ["a", { dtype: "float32" as const, shape: [1, 2], data: new Float32Array([0.5, 1]) }],
    ["c", { dtype: "uint8" as const, shape: [3], data: new Uint8Array([1, 2, 3]) }],
  ]);
  const bytes = writeSafetensors(t, { k: "v" });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const r = readSafetensors(bytes);
  assert.deepEqual([...r.tensors.keys()], ["a", "b", "c"]);
  assert.deepEqual(r.metadata, { k: "v" });
  assert.deepEqual(Array.from(r.tensors.get("b")!.data as BigInt64Array), [3n, 4n]);
});

Deno.test("readSafetensors: header past the file end is a SyntaxError naming the file", () => {
  const b = new Uint8Array(100);
  new DataView(b.buffer).setBigUint64(0, 9000n, true);
  assert.throws(() => readSafetensors(b, { source: "m.safetensors" }), {
    name: "SyntaxError",
    message:
      'Cannot read safetensors "m.safetensors": header of 9000 bytes runs past the end of the 100-byte file',
  });
});
