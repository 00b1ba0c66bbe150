import assert from "node:assert/strict";
import {
  F32,
  get,
  importEnvMemory,
  leb,
  name,
  perMemory,
  section,
  WASM_HEADER,
} from "../../lib/backend/wasm_assemble.ts";

Deno.test("leb writes unsigned LEB128 and refuses what it cannot encode", () => {
  assert.deepEqual(leb(0), [0]);
  assert.deepEqual(leb(127), [0x7f]);
  assert.deepEqual(leb(128), [0x80, 0x01]);
  assert.deepEqual(leb(624485), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(leb(2 ** 32 - 1), [0xff, 0xff, 0xff, 0xff, 0x0f]);
  for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) assert.throws(() => leb(bad), RangeError);
});

Deno.test("section and name prefix their lengths", () => {
  assert.deepEqual(section(7, Array(130).fill(0)).slice(0, 3), [7, 0x82, 0x01]);
  assert.deepEqual(name("é"), [2, 0xc3, 0xa9]);
});

Deno.test("perMemory builds one instance per memory that works on that memory", () => {
  // store(f32 at byte offset a) = x, exported as "put"
  const body = [0, ...get(0), ...get(1), 0x38, 2, 0, 0x0b];
  const bytes = new Uint8Array([
    ...WASM_HEADER,
    ...section(1, [1, 0x60, 2, 0x7f, F32, 0]),
    ...importEnvMemory(),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name("put"), 0x00, 0]),
    ...section(10, [1, body.length, ...body]),
  ]);
  let built = 0;
  const put = perMemory(bytes, (e) => {
    built++;
    return e.put as (at: number, x: number) => void;
  });
  const a = new WebAssembly.Memory({ initial: 1 });
  const b = new WebAssembly.Memory({ initial: 1 });
  put(a)!(8, 2.5);
  put(a)!(12, -1);
  put(b)!(8, 7);
  assert.equal(built, 2);
  assert.deepEqual([...new Float32Array(a.buffer, 8, 2)], [2.5, -1]);
  assert.equal(new Float32Array(b.buffer, 8, 1)[0], 7);
  const broken = perMemory(new Uint8Array([0, 1, 2]), () => 1);
  assert.equal(broken(a), null);
});
