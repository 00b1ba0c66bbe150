import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import {
  decodePng,
  encodePng,
  type HostTensor,
  readPngFile,
  tileImages,
  toUint8Image,
  writePngFile,
} from "@lib/io";

// A minimal independent PNG writer (filter 0 rows, one IDAT), to feed the decoder colour
// types and bit depths that encodePng never writes.
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function rawPng(
  width: number,
  height: number,
  depth: number,
  colorType: number,
  rows: number[][],
  extra: Uint8Array[] = [],
): Uint8Array {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([depth, colorType, 0, 0, 0], 8);
  const raw = new Uint8Array(rows.flatMap((r) => [0, ...r]));
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    ...extra,
    chunk("IDAT", new Uint8Array(deflateSync(raw))),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

Deno.test("encodePng -> decodePng round-trips gray, gray+alpha, RGB and RGBA", () => {
  for (const c of [1, 2, 3, 4]) {
    const data = new Uint8Array(5 * 3 * c).map((_, i) => (i * 37) % 256);
    const img = { dtype: "uint8" as const, shape: [5, 3, c], data };
    const back = decodePng(encodePng(img));
    assert.equal(back.dtype, "uint8");
    assert.deepEqual(back.shape, [5, 3, c]);
    assert.deepEqual(back.data, data);
  }
  // [H, W] is gray
  const g = decodePng(
    encodePng({ dtype: "uint8", shape: [2, 2], data: new Uint8Array([0, 1, 2, 3]) }),
  );
  assert.deepEqual(g.shape, [2, 2, 1]);
});

Deno.test("decodePng reads 1-bit gray, 16-bit gray and palette images with transparency", () => {
  // 1-bit gray, width 10: rows padded to 2 bytes
  const oneBit = decodePng(rawPng(10, 1, 1, 0, [[0b10100000, 0b01000000]]));
  assert.deepEqual(oneBit.shape, [1, 10, 1]);
  assert.deepEqual(Array.from(oneBit.data), [255, 0, 255, 0, 0, 0, 0, 0, 0, 255]);
  // 16-bit gray: 0xffff -> 255, 0x8080 -> 128, 0x0000 -> 0
  const g16 = decodePng(rawPng(3, 1, 16, 0, [[0xff, 0xff, 0x80, 0x80, 0, 0]]));
  assert.deepEqual(Array.from(g16.data), [255, 128, 0]);
  // 2-bit palette of 3 colours, colour 1 half transparent
  const plte = chunk("PLTE", new Uint8Array([10, 20, 30, 40, 50, 60, 70, 80, 90]));
  const trns = chunk("tRNS", new Uint8Array([255, 128]));
  const pal = decodePng(rawPng(3, 2, 2, 3, [[0b00011000], [0b10010000]], [plte, trns]));
  assert.deepEqual(pal.shape, [2, 3, 4]);
  assert.deepEqual(Array.from(pal.data), [
    ...[10, 20, 30, 255, 40, 50, 60, 128, 70, 80, 90, 255],
    ...[70, 80, 90, 255, 40, 50, 60, 128, 10, 20, 30, 255],
  ]);
  // an opaque palette gives RGB
  const rgb = decodePng(rawPng(2, 1, 8, 3, [[2, 0]], [plte]));
  assert.deepEqual(rgb.shape, [1, 2, 3]);
  assert.deepEqual(Array.from(rgb.data), [70, 80, 90, 10, 20, 30]);
});

Deno.test("decodePng: unreadable PNGs are SyntaxErrors naming the file", () => {
  const good = encodePng({ dtype: "uint8", shape: [4, 4, 3], data: new Uint8Array(48) });
  assert.throws(() => decodePng(new TextEncoder().encode("GIF89a......"), { source: "a.png" }), {
    name: "SyntaxError",
    message: 'Cannot decode PNG "a.png": missing the PNG signature',
  });
  // a flipped byte in the IDAT data fails the chunk CRC
  const flipped = good.slice();
  flipped[good.length - 20] ^= 0xff;
  assert.throws(() => decodePng(flipped, { source: "b.png" }), (e: Error) => {
    assert.equal(e.name, "SyntaxError");
    assert.match(e.message, /^Cannot decode PNG "b\.png": .*CRC/);
    return true;
  });
  // truncated in the middle of the IDAT chunk
  assert.throws(() => decodePng(good.subarray(0, 45), { source: "c.png" }), (e: Error) => {
    assert.equal(e.name, "SyntaxError");
    assert.match(e.message, /^Cannot decode PNG "c\.png": /);
    return true;
  });
  // a forged header claiming 100000 x 100000 pixels is refused before decoding
  const big = rawPng(100000, 100000, 8, 6, []);
  assert.throws(() => decodePng(big, { source: "d.png" }), {
    name: "SyntaxError",
    message:
      `Cannot decode PNG "d.png": header claims a 100000x100000 image, more than the ${big.length}-byte file can hold`,
  });
  // a palette index past the palette
  const plte = chunk("PLTE", new Uint8Array([1, 2, 3]));
  assert.throws(() => decodePng(rawPng(1, 1, 8, 3, [[5]], [plte]), { source: "e.png" }), {
    name: "SyntaxError",
    message: 'Cannot decode PNG "e.png": pixel 0 uses palette index 5 of 1',
  });
});

Deno.test("writePngFile / readPngFile round-trip through a file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const img = { dtype: "uint8" as const, shape: [3, 2, 3], data: new Uint8Array(18).fill(7) };
    await writePngFile(`${dir}/x.png`, img);
    const back = await readPngFile(`${dir}/x.png`);
    assert.deepEqual(back.data, img.data);
    await Deno.writeFile(`${dir}/bad.png`, new Uint8Array(3));
    await assert.rejects(() => readPngFile(`${dir}/bad.png`), {
      name: "SyntaxError",
      message: `Cannot decode PNG "${dir}/bad.png": missing the PNG signature`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodePng refuses non-uint8 and badly shaped images with a TypeError", () => {
  assert.throws(
    () => encodePng({ dtype: "float32", shape: [1, 1], data: new Float32Array(1) }),
    { name: "TypeError", message: "Cannot encode a float32 image as PNG: expected uint8" },
  );
  assert.throws(
    () => encodePng({ dtype: "uint8", shape: [1, 1, 5], data: new Uint8Array(5) }),
    {
      name: "TypeError",
      message:
        "Cannot encode PNG: expected an image of shape [H, W] or [H, W, C] with C in 1..4, got [1,1,5]",
    },
  );
});

Deno.test("tileImages lays images out row by row with padding and background", () => {
  const im = (v: number): HostTensor => ({
    dtype: "uint8",
    shape: [1, 2, 1],
    data: new Uint8Array([v, v + 1]),
  });
  const g = tileImages([im(10), im(20), im(30)], { columns: 2, padding: 1, background: 255 });
  assert.deepEqual(g.shape, [5, 7, 1]);
  const X = 255;
  assert.deepEqual(Array.from(g.data as Uint8Array), [
    ...[X, X, X, X, X, X, X],
    ...[X, 10, 11, X, 20, 21, X],
    ...[X, X, X, X, X, X, X],
    ...[X, 30, 31, X, X, X, X],
    ...[X, X, X, X, X, X, X],
  ]);
  // a batch tensor [N, H, W, C] of float32 keeps its dtype
  const batch = { dtype: "float32" as const, shape: [2, 1, 1, 3], data: new Float32Array(6) };
  const fg = tileImages(batch, { padding: 0 });
  assert.equal(fg.dtype, "float32");
  assert.deepEqual(fg.shape, [1, 2, 3]);
  assert.throws(() => tileImages([im(0), { ...im(0), shape: [2, 1, 1] }]), {
    name: "TypeError",
    message: "Cannot tile image 1: uint8 [2,1,1] differs from image 0, uint8 [1,2,1]",
  });
  assert.throws(() => tileImages([]), { name: "TypeError", message: "Cannot tile 0 images" });
});

Deno.test("toUint8Image maps [min, max] to 0..255 with clamping", () => {
  const u = toUint8Image(
    { dtype: "float32", shape: [5], data: new Float32Array([-1, 0, 0.5, 1, NaN]) },
  );
  assert.deepEqual(Array.from(u.data), [0, 0, 128, 255, 0]);
  const s = toUint8Image({ dtype: "int32", shape: [2], data: new Int32Array([-1, 1]) }, {
    min: -1,
    max: 1,
  });
  assert.deepEqual(Array.from(s.data), [0, 255]);
  assert.throws(
    () => toUint8Image({ dtype: "uint8", shape: [1], data: new Uint8Array(1) }, { max: 0 }),
    { name: "RangeError", message: "Cannot map [0, 0] to uint8: max <= min" },
  );
});
