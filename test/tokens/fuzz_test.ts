import assert from "node:assert/strict";
import { gzip, writeNpy } from "@lib/io";
import { Rng } from "@lib/random";
import { CorruptRecordError, openTokenDataset, TokenFileError } from "@lib/tokens";
import { encodeCodes, writeRawDataset } from "./_files.ts";

const MUTATIONS = 3000;
const PER_CASE_TIMEOUT_MS = 10_000;
const K = 391, N = 12, SIDE = 4;

type Target = "data.gz" | "index.gz" | "data" | "index" | "labels";

/** Apply one random byte-level mutation (flip, set, insert, delete, truncate, append). */
function mutate(bytes: Uint8Array, rng: Rng): Uint8Array {
  const b = Array.from(bytes);
  const kind = rng.int(0, 6);
  const at = rng.int(0, Math.max(1, b.length));
  const special = [0, 1, 254, 255, 0x1f, 0x8b, 0x93][rng.int(0, 7)];
  const value = rng.uniform() < 0.5 ? special : rng.int(0, 256);
  switch (kind) {
    case 0: // flip one bit
      if (b.length) b[at] ^= 1 << rng.int(0, 8);
      break;
    case 1: // set a byte
      if (b.length) b[at] = value;
      break;
    case 2: // insert a byte
      b.splice(at, 0, value);
      break;
    case 3: // delete 1..4 bytes
      b.splice(at, rng.int(1, 5));
      break;
    case 4: // truncate
      b.length = at;
      break;
    default: // append junk
      for (let i = rng.int(1, 9); i > 0; i--) b.push(rng.int(0, 256));
  }
  return Uint8Array.from(b);
}

/** Replace one int64 offset of the npy by a nearby or wild value. */
function mutateOffset(offsets: number[], rng: Rng): Uint8Array {
  const o = offsets.slice();
  const i = rng.int(0, o.length);
  const r = rng.uniform();
  o[i] = r < 0.4
    ? o[i] + rng.int(-3, 4)
    : r < 0.7
    ? rng.int(0, 400)
    : r < 0.85
    ? -rng.int(1, 9)
    : 2 ** rng.int(20, 62);
  return writeNpy({ dtype: "int64", shape: [o.length], data: BigInt64Array.from(o, BigInt) });
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what}`)), PER_CASE_TIMEOUT_MS);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

Deno.test(`fuzz: ${MUTATIONS} seeded mutations of data/index/labels end in a valid dataset or a TokenFileError, never a hang`, async () => {
  const rng = new Rng(20240611);
  const codes = Array.from(
    { length: N * SIDE * SIDE },
    (_, i) => i % 7 === 0 ? 255 + rng.int(0, 136) : rng.int(0, K),
  );
  const recs = Array.from({ length: N }, (_, r) => encodeCodes(codes.slice(r * 16, (r + 1) * 16)));
  const data = Uint8Array.from(recs.flat());
  const offsets = [0];
  for (const r of recs) offsets.push(offsets[offsets.length - 1] + r.length);
  const labels = Array.from({ length: N }, () => rng.int(0, 10));
  const dir = await Deno.makeTempDir({ prefix: "seitpp-fuzz-" });
  try {
    const p = await writeRawDataset(dir, "f", data, offsets, labels);
    const base = {
      data: await Deno.readFile(p.data),
      index: await Deno.readFile(p.index),
      labels: await Deno.readFile(p.labels),
    };
    const npy = writeNpy({
      dtype: "int64",
      shape: [N + 1],
      data: BigInt64Array.from(offsets, BigInt),
    });
    const outcomes = new Map<string, number>();
    const targets: Target[] = ["data.gz", "index.gz", "data", "index", "labels"];
    const out = new Int32Array(16);
    for (let m = 0; m < MUTATIONS; m++) {
      const target = targets[m % targets.length];
      const path = target.startsWith("data")
        ? p.data
        : target.startsWith("index")
        ? p.index
        : p.labels;
      const bytes = target === "data.gz"
        ? mutate(base.data, rng)
        : target === "index.gz"
        ? mutate(base.index, rng)
        : target === "data"
        ? gzip(mutate(data, rng))
        : target === "index"
        ? gzip(rng.uniform() < 0.5 ? mutate(npy, rng) : mutateOffset(offsets, rng))
        : mutate(base.labels, rng);
      await Deno.writeFile(path, bytes);
      const inferSide = rng.uniform() < 0.5;
      let outcome: string;
      try {
        const ds = await withTimeout(
          openTokenDataset(p.data, { codebookSize: K, gridSide: inferSide ? undefined : SIDE }),
          `mutation ${m} of ${target}`,
        );
        // success: every record must honour the format's contract
        assert.equal(ds.labels?.length ?? ds.length, ds.length);
        for (let i = 0; i < ds.length; i++) {
          const rec = ds.readRecord(i, ds.codesPerRecord === 16 ? out : undefined);
          assert.equal(rec.length >= ds.codesPerRecord, true);
          for (let j = 0; j < ds.codesPerRecord; j++) assert.ok(rec[j] >= 0 && rec[j] < K);
        }
        outcome = "ok";
      } catch (e) {
        if (!(e instanceof TokenFileError)) {
          throw new Error(
            `mutation ${m} of ${target} threw an untyped ${(e as Error).name}: ${
              (e as Error).message
            }`,
            {
              cause: e,
            },
          );
        }
        assert.ok(e.message.includes(e.file), `message does not name the file: ${e.message}`);
        outcome = e instanceof CorruptRecordError ? "CorruptRecordError" : "TokenFileError";
      }
      const key = `${target}:${outcome}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      await Deno.writeFile(
        path,
        base[target.startsWith("data") ? "data" : target.startsWith("index") ? "index" : "labels"],
      );
    }
    // the mutations reach every kind of failure and also leave some files valid
    for (
      const key of [
        "data.gz:TokenFileError",
        "data:CorruptRecordError",
        "index:CorruptRecordError",
        "index:TokenFileError",
        "labels:TokenFileError",
      ]
    ) {
      assert.ok((outcomes.get(key) ?? 0) > 0, `no ${key} in ${JSON.stringify([...outcomes])}`);
    }
    assert.ok([...outcomes.keys()].some((k) => k.endsWith(":ok")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
