/**
 * Seeded mutation fuzzing of every lib/io parser: bytes flipped, overwritten with extreme
 * values, truncated, inserted and deleted in valid files. Every failure must be one of the
 * typed errors and name the source; every parse must finish quickly (a forged size that
 * made a parser allocate or loop would show up as a slow parse or an out-of-memory crash).
 */
import assert from "node:assert/strict";
import { unzipSync, zipSync } from "fflate";
import { crc32 } from "node:zlib";
import {
  decodePng,
  encodePng,
  flattenTensors,
  gunzip,
  gzip,
  PyCallable,
  PyDict,
  readIdx,
  readNpy,
  readSafetensors,
  readTorch,
  torchToSafetensors,
  unpickle,
  UnsafePickleError,
  writeIdx,
  writeNpy,
  writeSafetensors,
} from "@lib/io";
import { Rng } from "@lib/random";
import { parityPath } from "../_support/fixtures.ts";
import { f32Bytes, pickle, type PV, tensorPV, torchLegacy, torchZip } from "./_pickler.ts";

/** The slowest single parse allowed (generous: 2 shared cores, CI noise). */
const MAX_PARSE_MS = 1500;

const INTERESTING = [
  [0xff, 0xff, 0xff, 0xff],
  [0xff, 0xff, 0xff, 0x7f],
  [0, 0, 0, 0x80],
  [0, 0, 0, 0],
  [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  [1],
  [0x7f],
  [0x80],
];

/**
 * Mutate a copy of `seed` 1 to 4 times; positions favour the first `hot` bytes and the
 * last 256 (headers, zip central directories, pickle tails).
 */
function mutate(rng: Rng, seed: Uint8Array, hot: number): Uint8Array {
  let b = seed.slice();
  const pos = () => {
    if (b.length === 0) return 0;
    const r = rng.uniform();
    if (r < 0.6) return rng.int(0, Math.min(hot, b.length));
    if (r < 0.8) return rng.int(Math.max(0, b.length - 256), b.length);
    return rng.int(0, b.length);
  };
  const n = rng.int(1, 5);
  for (let m = 0; m < n; m++) {
    const kind = rng.int(0, 6);
    if (kind === 0 && b.length > 0) b[pos()] ^= 1 << rng.int(0, 8);
    else if (kind === 1 && b.length > 0) b[pos()] = rng.int(0, 256);
    else if (kind === 2) b = b.slice(0, rng.int(0, b.length + 1));
    else if (kind === 3) {
      const p = pos(), k = rng.int(1, 9);
      const ins = Uint8Array.from({ length: k }, () => rng.int(0, 256));
      const out = new Uint8Array(b.length + k);
      out.set(b.subarray(0, p));
      out.set(ins, p);
      out.set(b.subarray(p), p + k);
      b = out;
    } else if (kind === 4 && b.length > 0) {
      const p = pos(), k = rng.int(1, 17);
      b = new Uint8Array([...b.subarray(0, p), ...b.subarray(Math.min(b.length, p + k))]);
    } else if (b.length > 0) {
      const v = INTERESTING[rng.int(0, INTERESTING.length)];
      const p = pos();
      for (let i = 0; i < v.length && p + i < b.length; i++) b[p + i] = v[i];
    }
  }
  return b;
}

interface Seed {
  bytes: Uint8Array;
  /** Mutations favour the first `hot` bytes. */
  hot: number;
  runs: number;
  /** The unmutated seed is refused (UnsafePickleError). */
  refused?: boolean;
}

interface Stats {
  ok: number;
  failed: Map<string, number>;
  slowest: number;
}

function fuzz(
  name: string,
  seeds: Seed[],
  parse: (b: Uint8Array, source: string) => unknown,
  rng: Rng,
): Stats {
  const stats: Stats = { ok: 0, failed: new Map(), slowest: 0 };
  const typed = [SyntaxError, RangeError, TypeError, UnsafePickleError];
  for (const [si, seed] of seeds.entries()) {
    // the seed itself parses (or, for a hostile seed, is refused)
    if (seed.refused) {
      assert.throws(() => parse(seed.bytes, `${name}-seed`), UnsafePickleError);
    } else parse(seed.bytes, `${name}-seed`);
    for (let i = 0; i < seed.runs; i++) {
      const input = mutate(rng, seed.bytes, seed.hot);
      const source = `${name}-${si}-${i}`;
      const t0 = performance.now();
      try {
        parse(input, source);
        stats.ok++;
      } catch (e) {
        if (!typed.some((T) => e instanceof T)) {
          throw new Error(`${source}: untyped ${(e as Error)?.name}: ${(e as Error)?.message}`, {
            cause: e,
          });
        }
        const msg = (e as Error).message;
        if (!msg.includes(source)) {
          throw new Error(`${source}: error does not name the source: ${msg}`);
        }
        const cls = (e as Error).name;
        stats.failed.set(cls, (stats.failed.get(cls) ?? 0) + 1);
      }
      const ms = performance.now() - t0;
      stats.slowest = Math.max(stats.slowest, ms);
      if (ms > MAX_PARSE_MS) {
        throw new Error(`${source}: a parse took ${ms.toFixed(0)} ms`);
      }
    }
  }
  return stats;
}

function report(name: string, s: Stats, runs: number): void {
  const failed = [...s.failed].map(([k, v]) => `${k} ${v}`).join(", ");
  console.log(
    `${name}: ${runs} inputs, ${s.ok} parsed, failed: ${failed}; slowest ${
      s.slowest.toFixed(1)
    } ms`,
  );
  // the mutations must actually reach the parser's error paths
  const nFailed = [...s.failed.values()].reduce((a, b) => a + b, 0);
  assert.ok(nFailed > runs / 10, `${name}: only ${nFailed} of ${runs} mutated inputs failed`);
}

/** Recompute every PNG chunk CRC that fits, so that mutations reach past the CRC check. */
function fixPngCrcs(b: Uint8Array): Uint8Array {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let p = 8; p + 12 <= b.length;) {
    const len = v.getUint32(p);
    if (p + 12 + len > b.length) break;
    v.setUint32(p + 8 + len, crc32(b.subarray(p + 4, p + 8 + len)));
    p += 12 + len;
  }
  return b;
}

const smallTorchObj: PV = {
  dict: [
    ["w", tensorPV("0", "FloatStorage", 6, 0, [2, 3], [3, 1])],
    ["t", tensorPV("0", "FloatStorage", 6, 1, [2, 2], [1, 3])],
    ["i", tensorPV("1", "LongStorage", 2, 0, [2], [1])],
    ["epoch", 3],
    ["args", {
      build: [{ newobj: [{ global: "argparse Namespace" }, []] }, {
        dict: [["lr", { float: 0.5 }], ["name", "x"], ["t", [1, null, true]]],
      }],
    }],
    [7, { list: [{ float: 1.5 }, 2n ** 70n] }],
  ],
};
const storages = {
  "0": f32Bytes([0, 1, 2, 3, 4, 5]),
  "1": new Uint8Array(new BigInt64Array([5n, -6n]).buffer),
};

/** The same error class, with the source prepended (flattening has no file name to give). */
function renamed(e: unknown, source: string): Error {
  const C = (e as Error).constructor as ErrorConstructor;
  return new C(`${source}: ${(e as Error).message}`);
}

function parseTorch(b: Uint8Array, source: string): void {
  const v = readTorch(b, { source });
  try {
    const { tensors, metadata } = torchToSafetensors(v);
    writeSafetensors(tensors, metadata);
  } catch (e) {
    // flattening a parsed value can only fail for cycles, clashes or depth: name it
    throw renamed(e, source);
  }
}

Deno.test("fuzz: every parser fails only with typed errors naming the file, quickly", async () => {
  const rng = new Rng(20240611);
  const t0 = performance.now();
  const total: [string, Stats, number][] = [];
  const run = (
    name: string,
    seeds: Seed[],
    parse: (b: Uint8Array, source: string) => unknown,
  ) => {
    const s = fuzz(name, seeds, parse, rng.fork(name));
    total.push([name, s, seeds.reduce((a, x) => a + x.runs, 0)]);
  };

  run("npy", [
    {
      bytes: writeNpy({ dtype: "int64", shape: [3], data: new BigInt64Array([1n, 2n, 3n]) }),
      hot: 140,
      runs: 1500,
    },
    {
      bytes: writeNpy({ dtype: "float32", shape: [2, 3], data: new Float32Array(6) }),
      hot: 140,
      runs: 1000,
    },
  ], (b, source) => readNpy(b, { source }));

  run("safetensors", [{
    bytes: writeSafetensors(
      new Map([
        ["a", { dtype: "float32" as const, shape: [2, 2], data: new Float32Array(4) }],
        ["b", { dtype: "int64" as const, shape: [1], data: new BigInt64Array(1) }],
      ]),
      { k: "v" },
    ),
    hot: 200,
    runs: 2500,
  }], (b, source) => readSafetensors(b, { source }));

  run("idx", [
    {
      bytes: writeIdx({ dtype: "uint8", shape: [5, 3, 3], data: new Uint8Array(45) }),
      hot: 20,
      runs: 1500,
    },
    {
      bytes: writeIdx({ dtype: "float64", shape: [4], data: new Float64Array(4) }),
      hot: 12,
      runs: 1000,
    },
  ], (b, source) => readIdx(b, { source }));

  run("gzip", [{
    bytes: gzip(new TextEncoder().encode("tokens ".repeat(200))),
    hot: 64,
    runs: 2000,
  }], (
    b,
    source,
  ) => gunzip(b, { source }));

  run("png", [
    {
      bytes: encodePng({
        dtype: "uint8",
        shape: [6, 5, 3],
        data: Uint8Array.from({ length: 90 }, (_, i) => (i * 29) % 256),
      }),
      hot: 64,
      runs: 2500,
    },
  ], (b, source) => decodePng(fixPngCrcs(b), { source }));

  const codebookZip = await Deno.readFile(parityPath("codebook.ckpt"));
  run("torch-zip", [
    { bytes: torchZip(smallTorchObj, storages), hot: 700, runs: 4000 },
    { bytes: codebookZip, hot: 300, runs: 300 },
  ], parseTorch);

  const codebookLegacy = await Deno.readFile(parityPath("codebook_legacy.ckpt"));
  run("torch-legacy", [
    {
      bytes: torchLegacy(smallTorchObj, [["0", 6, storages["0"]], ["1", 2, storages["1"]]]),
      hot: 600,
      runs: 4000,
    },
    { bytes: codebookLegacy, hot: 340, runs: 300 },
  ], parseTorch);

  // raw pickles with an allow-list that admits anything harmless, to reach every opcode path
  const pkl = unzipSync(await Deno.readFile(parityPath("checkpoint.pth")))["checkpoint/data.pkl"];
  const anything = (m: string, n: string) =>
    m === "os" ? undefined : new PyCallable(`${m}.${n}`, () => new PyDict(`${m}.${n}`));
  run("pickle", [
    { bytes: pickle(smallTorchObj), hot: 1000, runs: 3000 },
    { bytes: pkl, hot: 1000, runs: 500 },
    { bytes: await Deno.readFile(parityPath("malicious.ckpt")), hot: 74, runs: 500, refused: true },
  ], (b, source) => {
    const { value } = unpickle(b, { source, resolveGlobal: anything, persistentLoad: (p) => p });
    try {
      flattenTensors(value);
    } catch (e) {
      throw renamed(e, source);
    }
  });

  for (const [name, s, runs] of total) report(name, s, runs);
  const secs = (performance.now() - t0) / 1000;
  console.log(`fuzz total ${secs.toFixed(1)} s`);
});

Deno.test("headers claiming huge sizes are refused before anything is allocated", () => {
  const big = 0xfffffff0;
  const cases: [string, () => unknown, RegExp][] = [];
  // .npy: shape (2**40,) with 8 data bytes
  const npyHeader = "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }";
  const hb = new TextEncoder().encode(npyHeader.padEnd(117) + "\n");
  const npy = new Uint8Array([0x93, 78, 85, 77, 80, 89, 1, 0, hb.length, 0, ...hb, 1, 2, 3, 4]);
  cases.push(["npy", () => readNpy(npy, { source: "n" }), /needs 8796093022208$/]);
  // safetensors: a tensor whose data_offsets end far past the file
  const json = new TextEncoder().encode(
    JSON.stringify({ a: { dtype: "F32", shape: [2 ** 30], data_offsets: [0, 2 ** 32] } }),
  );
  const st = new Uint8Array(8 + json.length);
  new DataView(st.buffer).setBigUint64(0, BigInt(json.length), true);
  st.set(json, 8);
  cases.push(["safetensors", () => readSafetensors(st, { source: "s" }), /runs past the 0-byte/]);
  // idx: 2**32-16 records of 1 byte
  const idx = new Uint8Array([0, 0, 8, 1, 0xff, 0xff, 0xff, 0xf0, 1]);
  cases.push(["idx", () => readIdx(idx, { source: "i" }), /needs 4294967280$/]);
  // pickle: BINBYTES8 of 2**62 bytes, BINUNICODE of 4 GB, LONG4 of 2 GB
  const b8 = new Uint8Array([0x80, 4, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x2e]);
  cases.push(["pickle", () => unpickle(b8, { source: "p" }), /bytes needed but only 1 remain/]);
  const u4 = new Uint8Array([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0xff, 0x2e]);
  cases.push(["pickle", () => unpickle(u4, { source: "p" }), /4294967295 bytes needed/]);
  const l4 = new Uint8Array([0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f, 0x2e]);
  cases.push(["pickle", () => unpickle(l4, { source: "p" }), /2147483647 bytes needed/]);
  // legacy torch: a storage claiming 2**60 elements
  const leg = torchLegacy(tensorPV("0", "FloatStorage", 4, 0, [4], [1]), [
    ["0", 2 ** 60, new Uint8Array(16)],
  ]);
  cases.push(["legacy", () => readTorch(leg, { source: "l" }), /claims 1152921504606846976 el/]);
  // zip: a deflated data.pkl whose directory claims 4 GB uncompressed
  const z = zipSync({ "a/data.pkl": [new Uint8Array(1000), { level: 9 }] });
  const v = new DataView(z.buffer);
  for (let p = 0; p + 46 <= z.length; p++) {
    if (v.getUint32(p, true) === 0x02014b50) v.setUint32(p + 24, big, true);
  }
  cases.push([
    "zip",
    () => readTorch(z, { source: "z" }),
    /claims 4294967280 bytes from \d+ compressed/,
  ]);
  // png: a 65535 x 65535 RGBA header in a tiny file
  const png = encodePng({ dtype: "uint8", shape: [1, 1, 4], data: new Uint8Array(4) });
  new DataView(png.buffer).setUint32(16, 65535);
  new DataView(png.buffer).setUint32(20, 65535);
  cases.push([
    "png",
    () => decodePng(fixPngCrcs(png), { source: "g" }),
    /header claims a 65535x65535/,
  ]);

  for (const [name, f, message] of cases) {
    const before = Deno.memoryUsage().rss;
    const t0 = performance.now();
    assert.throws(f, (e: Error) => {
      assert.equal(e.name, "SyntaxError", `${name}: ${e.message}`);
      assert.match(e.message, message);
      return true;
    });
    assert.ok(performance.now() - t0 < 200, `${name} took too long`);
    assert.ok(Deno.memoryUsage().rss - before < 256 * 2 ** 20, `${name} allocated a lot`);
  }
});
