import assert from "node:assert/strict";
import { readSafetensorsFile, toInt32 } from "@lib/io";
import { parityPath } from "../_support/fixtures.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const DATA = parityPath("tiny-train-token.data.bin.gz");

async function inspect(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tasks/tokens_inspect.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("tokens:inspect --json reports the fixture's counts and a sha256 equal to one computed here", async () => {
  const st = await readSafetensorsFile(parityPath("tokens_decoded.safetensors"));
  const ids = toInt32(st.tensors.get("ids")!);
  const labels = toInt32(st.tensors.get("labels")!);
  // independent: SHA-256 of the int32 little-endian codes, via WebCrypto
  const le = new Uint8Array(ids.length * 4);
  const view = new DataView(le.buffer);
  ids.forEach((c, i) => view.setInt32(4 * i, c, true));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", le));
  const sha = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");

  const r = await inspect(DATA, "--json", "--codebook-size", "391", "--top", "3");
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.sha256, sha);
  assert.equal(s.records, 50);
  assert.equal(s.gridSide, 32);
  assert.equal(s.codes, 51200);
  assert.equal(s.dataBytes, 76812);
  const counts = new Map<number, number>();
  for (const c of ids) counts.set(c, (counts.get(c) ?? 0) + 1);
  assert.equal(s.distinctCodes, counts.size);
  assert.equal(s.minCode, Math.min(...counts.keys()));
  assert.equal(s.maxCode, Math.max(...counts.keys()));
  assert.equal(s.escapedCodes, ids.filter((c) => c >= 255).length);
  let h = 0;
  for (const n of counts.values()) h -= (n / ids.length) * Math.log2(n / ids.length);
  assert.ok(Math.abs(s.entropyBits - h) < 1e-9);
  const top = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, 3);
  assert.deepEqual(s.topCodes.map((t: { code: number; count: number }) => [t.code, t.count]), top);
  assert.deepEqual(s.labels, {
    count: 50,
    classes: new Set(labels).size,
    min: Math.min(...labels),
    max: Math.max(...labels),
  });
  assert.equal(s.labelsPath, parityPath("tiny-train-label.txt"));

  const text = await inspect(DATA);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`^sha256 +${sha}$`, "m"));
  assert.match(text.stdout, /^records +50 x 32x32 = 51200 codes/m);
});

Deno.test("tokens:inspect exits 1 with one line naming the file and record on corrupt input, 2 on bad arguments", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await inspect(DATA, "--codebook-size", "300");
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `tokens:inspect: Cannot decode record 0 of "${DATA}": code 390 at row 0, column 4 is outside the codebook of 300 codes\n`,
    );
    assert.equal(r.stdout, "");

    const bytes = await Deno.readFile(DATA);
    const cut = `${dir}/cut-token.data.bin.gz`;
    await Deno.writeFile(cut, bytes.subarray(0, 1000));
    const t = await inspect(cut, "--index", parityPath("tiny-train-token.index.npy.gz"));
    assert.equal(t.code, 1);
    assert.equal(t.stderr, `tokens:inspect: Cannot gunzip "${cut}": unexpected end of file\n`);

    const missing = await inspect(`${dir}/none-token.data.bin.gz`);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr.trim().split("\n").length, 1);

    const usage = await inspect();
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^tokens:inspect: expected one data file, got 0\nusage: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
