/**
 * Hostile files for the parsers, each run in a bounded subprocess through
 * test/hostile/_parse.ts: safetensors data_offsets that do not tile the data, gzip bombs
 * behind .npy and idx headers, headers asking for more than the cap.
 */
import { deflateSync } from "node:zlib";
import { zipSync } from "fflate";
import { gzip, writeNpy } from "@lib/io";
import { f32Bytes, pickle, type PV, tensorPV, torchZip } from "../io/_pickler.ts";
import { assertRefused, runBounded, withTempDir } from "./_run.ts";

const parse = (kind: string, file: string, env?: Record<string, string>) =>
  runBounded(["run", "-A", "test/hostile/_parse.ts", kind, file], { env });

/** A safetensors file with the given header entries over `dataLen` bytes of data. */
function safetensors(entries: Record<string, [number, number]>, dataLen: number): Uint8Array {
  const header: Record<string, unknown> = {};
  for (const [name, [b, e]] of Object.entries(entries)) {
    header[name] = { dtype: "F32", shape: [(e - b) / 4], data_offsets: [b, e] };
  }
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

Deno.test("safetensors: overlapping, gapped, out-of-bounds offsets and unowned bytes are refused naming the tensor", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "overlap",
        safetensors({ a: [0, 16], b: [8, 24] }, 24),
        /^SyntaxError: Cannot read safetensors ".*overlap\.safetensors": tensor "b" data \[8, 24\) overlaps tensor "a" data \[0, 16\)$/,
      ],
      [
        "same",
        safetensors({ a: [0, 16], b: [0, 16] }, 16),
        /^SyntaxError: Cannot read safetensors ".*": tensor "b" data \[0, 16\) overlaps tensor "a" data \[0, 16\)$/,
      ],
      [
        "gap",
        safetensors({ a: [0, 8], b: [16, 24] }, 24),
        /^SyntaxError: Cannot read safetensors ".*": tensor "b" data starts at 16, leaving a gap of 8 bytes after tensor "a"$/,
      ],
      [
        "start",
        safetensors({ a: [8, 16] }, 16),
        /^SyntaxError: Cannot read safetensors ".*": tensor "a" data starts at 8, leaving a gap of 8 bytes after the header$/,
      ],
      [
        "oob",
        safetensors({ a: [0, 8], b: [8, 4000] }, 16),
        /^SyntaxError: Cannot read safetensors ".*": tensor "b" data \[8, 4000\) runs past the 16-byte data section$/,
      ],
      [
        "rest",
        safetensors({ a: [0, 8] }, 24),
        /^SyntaxError: Cannot read safetensors ".*": the tensors cover 8 bytes, but the data section holds 24 \(16 bytes belong to no tensor\)$/,
      ],
    ];
    for (const [name, bytes, message] of cases) {
      const file = `${dir}/${name}.safetensors`;
      await Deno.writeFile(file, bytes);
      assertRefused(await parse("safetensors", file), { code: 1, message });
    }
    // out of order in the header but tiling the data: accepted (the format allows it)
    await Deno.writeFile(`${dir}/order.safetensors`, safetensors({ z: [0, 8], a: [8, 16] }, 16));
    const r = await parse("safetensors", `${dir}/order.safetensors`);
    if (r.code !== 0) throw new Error(r.stderr);
  });
});

Deno.test("a gzip bomb behind a valid .npy header stops after the declared array", async () => {
  await withTempDir(async (dir) => {
    const npy = writeNpy({ dtype: "float32", shape: [4], data: new Float32Array(4) });
    const zero = gzip(new Uint8Array(64 * 2 ** 20), 9);
    const first = gzip(npy);
    const bomb = new Uint8Array(first.length + 40 * zero.length);
    bomb.set(first);
    for (let i = 0; i < 40; i++) bomb.set(zero, first.length + i * zero.length);
    await Deno.writeFile(`${dir}/a.npy.gz`, bomb);
    assertRefused(await parse("npy", `${dir}/a.npy.gz`), {
      code: 1,
      message: new RegExp(
        `^SyntaxError: Cannot read \\.npy ".*a\\.npy\\.gz": it decompresses past the ${npy.length} bytes its header declares \\(shape \\[4\\] of float32\\)$`,
      ),
    });
  });
});

Deno.test("a gzip bomb behind a valid idx header stops after the declared data", async () => {
  await withTempDir(async (dir) => {
    // uint8, 1 dimension of 10 elements
    const idx = new Uint8Array([0, 0, 8, 1, 0, 0, 0, 10, ...new Array(10).fill(1)]);
    const zero = gzip(new Uint8Array(64 * 2 ** 20), 9);
    const first = gzip(idx);
    const bomb = new Uint8Array(first.length + 40 * zero.length);
    bomb.set(first);
    for (let i = 0; i < 40; i++) bomb.set(zero, first.length + i * zero.length);
    await Deno.writeFile(`${dir}/x-idx1-ubyte.gz`, bomb);
    assertRefused(await parse("idx", `${dir}/x-idx1-ubyte.gz`), {
      code: 1,
      message:
        /^SyntaxError: Cannot read idx ".*x-idx1-ubyte\.gz": it decompresses past the 18 bytes its header declares$/,
    });
  });
});

Deno.test("headers asking for more than the cap (SEITPP_MAX_READ_BYTES) are RangeErrors before allocating", async () => {
  await withTempDir(async (dir) => {
    // an idx header of 60000 x 28 x 28 uint8 (47 MB) behind a small gzip, cap 1 MB
    const head = new Uint8Array([0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28]);
    await Deno.writeFile(`${dir}/big-idx3-ubyte.gz`, gzip(head));
    const env = { SEITPP_MAX_READ_BYTES: String(2 ** 20) };
    assertRefused(await parse("idx", `${dir}/big-idx3-ubyte.gz`, env), {
      code: 1,
      message:
        /^RangeError: Cannot read idx ".*big-idx3-ubyte\.gz": it asks for 47040016 bytes, more than the cap of 1048576 \(set SEITPP_MAX_READ_BYTES to raise it\)$/,
    });
    // a plain file larger than the cap
    await Deno.writeFile(`${dir}/big.safetensors`, new Uint8Array(2 ** 20 + 1));
    assertRefused(await parse("safetensors", `${dir}/big.safetensors`, env), {
      code: 1,
      message:
        /^RangeError: Cannot read safetensors ".*big\.safetensors": it asks for 1048577 bytes/,
    });
  });
});

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
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

Deno.test("a PNG whose image data is a zlib bomb stops at the bytes its 1x1 header needs", async () => {
  await withTempDir(async (dir) => {
    const ihdr = new Uint8Array([0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]); // 1x1 gray, 8-bit
    const idat = deflateSync(new Uint8Array(256 * 2 ** 20), { level: 9 }); // ~256 KB
    const parts = [
      new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk("IHDR", ihdr),
      chunk("IDAT", idat),
      chunk("IEND", new Uint8Array(0)),
    ];
    const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      png.set(p, at);
      at += p.length;
    }
    await Deno.writeFile(`${dir}/bomb.png`, png);
    assertRefused(await parse("png", `${dir}/bomb.png`), {
      code: 1,
      message:
        /^SyntaxError: Cannot decode PNG ".*bomb\.png": image data inflates past the 2 bytes a 1x1 image needs$/,
    });
  });
});

Deno.test("the torch reader's error classes: RangeError for 200 broadcast views, SyntaxError for a lying zip entry", async () => {
  await withTempDir(async (dir) => {
    const views: PV[] = [];
    for (let i = 0; i < 200; i++) views.push(tensorPV("0", "FloatStorage", 1, 0, [2 ** 22], [0]));
    await Deno.writeFile(`${dir}/v.pth`, torchZip({ list: views }, { "0": f32Bytes([7]) }));
    assertRefused(await parse("torch", `${dir}/v.pth`), {
      code: 1,
      message: /^RangeError: Cannot read torch file ".*v\.pth": its 200 tensors expand past/,
    });
    const z = zipSync({
      "archive/data.pkl": pickle(tensorPV("0", "FloatStorage", 10, 0, [10], [1])),
      "archive/data/0": new Uint8Array(64 * 2 ** 20),
    }, { level: 6 });
    const v = new DataView(z.buffer);
    for (let p = 0; p + 46 <= z.length; p++) {
      if (v.getUint32(p, true) === 0x02014b50 && v.getUint32(p + 24, true) === 64 * 2 ** 20) {
        v.setUint32(p + 24, 40, true);
      }
    }
    await Deno.writeFile(`${dir}/z.pth`, z);
    assertRefused(await parse("torch", `${dir}/z.pth`), {
      code: 1,
      message:
        /^SyntaxError: Cannot read torch file ".*z\.pth": entry "archive\/data\/0" inflates past its declared 40 bytes$/,
    });
  });
});
