import assert from "node:assert/strict";
import {
  buildSynonyms,
  type Codebook,
  formatSynonyms,
  loadCodebook,
  parseSynonyms,
  readSynonyms,
  synonymMatrix,
  writeSynonyms,
} from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";

const SYN = parityPath("synonyms.json");

/** Cosine similarity of rows a and b, computed plainly (independent of the builder). */
function cosine(cb: Codebook, a: number, b: number): number {
  const d = cb.shape[1];
  let ab = 0, aa = 0, bb = 0;
  for (let j = 0; j < d; j++) {
    const x = cb.data[a * d + j], y = cb.data[b * d + j];
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return ab / Math.sqrt(aa * bb);
}

Deno.test("the fixture synonyms.json reads and writes back byte for byte (Python json.dumps layout)", async () => {
  const text = await Deno.readTextFile(SYN);
  const syn = await readSynonyms(SYN, { codebookSize: 391 });
  assert.equal(syn.size, 391);
  // what the official dictionary holds: every code, 8 distinct other codes each
  for (let c = 0; c < 391; c++) {
    const list = Array.from(syn.lists[c]);
    assert.equal(list.length, 8);
    assert.equal(new Set(list).size, 8);
    assert.ok(!list.includes(c), `code ${c} lists itself`);
  }
  assert.equal(formatSynonyms(syn), text);
  const dir = await Deno.makeTempDir();
  try {
    await writeSynonyms(`${dir}/s.json`, syn);
    assert.equal(await Deno.readTextFile(`${dir}/s.json`), text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the builder gives the fixture's structure: 391 lists of the 8 most cosine-similar other codes, in order", async () => {
  const cb = await loadCodebook(parityPath("codebook.safetensors"));
  const syn = buildSynonyms(cb);
  assert.equal(syn.size, 391);
  for (let c = 0; c < 391; c++) {
    const list = Array.from(syn.lists[c]);
    assert.equal(list.length, 8);
    assert.ok(!list.includes(c));
    const sims = list.map((o) => cosine(cb, c, o));
    for (let i = 1; i < 8; i++) assert.ok(sims[i - 1] >= sims[i] - 1e-12, `code ${c} out of order`);
    let bestOther = -Infinity;
    for (let o = 0; o < 391; o++) {
      if (o !== c && !list.includes(o)) bestOther = Math.max(bestOther, cosine(cb, c, o));
    }
    assert.ok(sims[7] >= bestOther - 1e-12, `code ${c}: an unlisted code is more similar`);
  }
  // the text layout matches the fixture's (keys in order, Python separators)
  assert.match(formatSynonyms(syn), /^\{"0": \[\d+(, \d+){7}\], "1": \[/);
});

Deno.test("finding: the fixture dictionary is not derivable from the fixture codebook (overlap at chance level)", async () => {
  // meta.json calls it "made up for the fixture". Cosine top-8 shares ~2% of its entries
  // with it, the 8/390 = 2.05% that random lists would share.
  const cb = await loadCodebook(parityPath("codebook.safetensors"));
  const built = buildSynonyms(cb);
  const fixture = await readSynonyms(SYN);
  let shared = 0;
  for (let c = 0; c < 391; c++) {
    const f = new Set(fixture.lists[c]);
    for (const o of built.lists[c]) if (f.has(o)) shared++;
  }
  assert.ok(shared / (391 * 8) < 0.05, `shared ${shared}`);
});

Deno.test("ties go to the smaller code, a zero row is similar to nothing, includeSelf puts the code first", () => {
  const cb: Codebook = {
    dtype: "float32",
    shape: [5, 2],
    data: Float32Array.from([1, 0, 0, 1, 2, 0, 0, 0, 3, 0]),
  };
  // codes 0, 2 and 4 point the same way; 3 is the zero row
  const syn = buildSynonyms(cb, { k: 4 });
  assert.deepEqual(Array.from(syn.lists[0]), [2, 4, 1, 3]);
  assert.deepEqual(Array.from(syn.lists[4]), [0, 2, 1, 3]);
  assert.deepEqual(Array.from(syn.lists[3]), [0, 1, 2, 4]);
  const self = buildSynonyms(cb, { k: 2, includeSelf: true });
  assert.deepEqual(Array.from(self.lists[2]), [0, 2]);
  assert.deepEqual(Array.from(self.lists[1]), [1, 0]);
  assert.throws(
    () => buildSynonyms(cb, { k: 5 }),
    new RangeError("Cannot build 5 synonyms per code from 5 codes: expected 1..4"),
  );
});

Deno.test("the loader refuses codes >= K, bad keys, bad values and bad JSON", () => {
  assert.throws(
    () => parseSynonyms('{"0": [1, 2], "1": [0, 391]}', "s.json", { codebookSize: 391 }),
    new RangeError(
      'Cannot read synonyms "s.json": code 391 in the list of code 1 is outside the codebook of 391 codes',
    ),
  );
  assert.throws(
    () => parseSynonyms('{"0": [1], "400": [0]}', "s.json", { codebookSize: 391 }),
    new RangeError('Cannot read synonyms "s.json": key 400 is outside the codebook of 391 codes'),
  );
  assert.throws(
    () => parseSynonyms('{"01": [1]}', "s.json"),
    new SyntaxError('Cannot read synonyms "s.json": key "01" is not a code'),
  );
  assert.throws(
    () => parseSynonyms('{"0": [1, -2]}', "s.json"),
    new SyntaxError(
      'Cannot read synonyms "s.json": the value of code 0 is not a list of codes (integers 0..2^31-1)',
    ),
  );
  assert.throws(
    () => parseSynonyms("[1, 2]", "s.json"),
    new SyntaxError('Cannot read synonyms "s.json": expected a JSON object of code lists'),
  );
  assert.throws(
    () => parseSynonyms("{", "s.json"),
    (e: Error) =>
      e instanceof SyntaxError &&
      e.message.startsWith('Cannot read synonyms "s.json": not valid JSON'),
  );
});

Deno.test("synonymMatrix takes the first k of each list, refusing short lists", async () => {
  const syn = await readSynonyms(SYN, { codebookSize: 391 });
  const m = synonymMatrix(syn, 5);
  assert.equal(m.length, 391 * 5);
  assert.deepEqual(Array.from(m.subarray(0, 5)), Array.from(syn.lists[0].subarray(0, 5)));
  assert.deepEqual(Array.from(m.subarray(390 * 5)), Array.from(syn.lists[390].subarray(0, 5)));
  const sparse = parseSynonyms('{"0": [1, 2], "2": [0, 1]}');
  assert.equal(sparse.size, 3);
  assert.throws(
    () => synonymMatrix(sparse, 2),
    new RangeError("Cannot take 2 synonyms of code 1: the dictionary lists 0"),
  );
});
