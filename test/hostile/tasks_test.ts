/**
 * Hostile command lines for the non-training tasks: a missing fixture folder, output paths
 * that cannot be written, and relative paths typed in another folder than the project's.
 */
import assert from "node:assert/strict";
import { writeTokenDataset } from "@lib/tokens";
import { f32Bytes, tensorPV, torchZip } from "../io/_pickler.ts";
import { assertBounded, assertRefused, listDir, ROOT, runBounded, withTempDir } from "./_run.ts";

Deno.test("deno task parity on a missing folder, a file or a folder without meta.json: one line, exit 2", async () => {
  await withTempDir(async (dir) => {
    let r = await runBounded(["run", "-A", "tasks/parity.ts", `${dir}/missing`]);
    assertRefused(r, {
      code: 2,
      message:
        /^parity: No parity fixture at ".*\/missing": .*\/missing\/meta\.json does not exist$/,
    });
    await Deno.writeTextFile(`${dir}/file`, "x");
    r = await runBounded(["run", "-A", "tasks/parity.ts", `${dir}/file`]);
    assertRefused(r, { code: 2, message: /^parity: .*file\/meta\.json/ });
    await Deno.writeTextFile(`${dir}/meta.json`, "{not json");
    r = await runBounded(["run", "-A", "tasks/parity.ts", dir]);
    assertRefused(r, { code: 2, message: /^parity: Cannot parse ".*meta\.json": / });
  });
});

Deno.test("decode into a missing folder or onto a folder: one line naming the user's path, before any work", async () => {
  await withTempDir(async (dir) => {
    // no decoder and no data are needed: the output is checked first
    const data = `${dir}/x-token.data.bin.gz`;
    let r = await runBounded(["run", "-A", "tasks/decode.ts", data, "--out", `${dir}/no/g.png`]);
    assertRefused(r, {
      code: 2,
      message: /^decode: Cannot write output ".*\/no\/g\.png": folder ".*\/no" does not exist$/,
    });
    await Deno.mkdir(`${dir}/g.png`);
    r = await runBounded(["run", "-A", "tasks/decode.ts", data, "--out", `${dir}/g.png`]);
    assertRefused(r, {
      code: 2,
      message: /^decode: Cannot write output ".*\/g\.png": it is a directory$/,
    });
    assert.deepEqual(await listDir(dir), ["g.png"]);
  });
});

Deno.test("relative paths of deno task are the caller's folder (INIT_CWD), not the project's", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/in`);
    await Deno.writeFile(
      `${dir}/in/c.ckpt`,
      torchZip(tensorPV("0", "FloatStorage", 2, 0, [2], [1]), { "0": f32Bytes([1, 2]) }),
    );
    // typed in `dir`: deno task finds the project by --config and runs in the project root
    // (INIT_CWD is removed: an outer `deno task test` set it, and deno task keeps it)
    const fresh = { cwd: dir, unsetEnv: ["INIT_CWD"] };
    const r = await runBounded(
      ["task", "--config", `${ROOT}/deno.json`, "ckpt:convert", "in/c.ckpt", "c.safetensors"],
      fresh,
    );
    assertBounded(r);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await listDir(dir), ["c.safetensors", "in"]);
    // and nothing appeared in the project folder
    await assert.rejects(() => Deno.stat(`${ROOT}/c.safetensors`), Deno.errors.NotFound);
    // a missing relative input is named as resolved from the caller's folder
    const m = await runBounded(
      ["task", "--config", `${ROOT}/deno.json`, "ckpt:convert", "nope.ckpt", "o.safetensors"],
      fresh,
    );
    assertRefused(m, {
      code: 1,
      message: new RegExp(`^ckpt:convert: Cannot read "${dir}/nope\\.ckpt": no such file$`),
    });
  });
});

Deno.test("decode with a decoder whose safetensors offsets overlap: refused naming the tensor, no PNG", async () => {
  await withTempDir(async (dir) => {
    await Deno.copyFile(`${ROOT}/data/fmnist8/tokenizer.json`, `${dir}/tokenizer.json`);
    const bytes = await Deno.readFile(`${ROOT}/data/fmnist8/decoder.safetensors`);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    // the second tensor in data order starts 4 bytes early, inside the first
    const names = Object.keys(header).filter((k) => k !== "__metadata__")
      .sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
    const victim = names[1];
    header[victim].data_offsets = header[victim].data_offsets.map((o: number) => o - 4);
    const h = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + h.length + bytes.length - 8 - n);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    out.set(bytes.subarray(8 + n), 8 + h.length);
    await Deno.writeFile(`${dir}/decoder.safetensors`, out);
    const r = await runBounded([
      "run",
      "-A",
      "tasks/decode.ts",
      `${dir}/x-token.data.bin.gz`,
      "--decoder",
      dir,
      "--backend",
      "cpu",
    ]);
    assertRefused(r, {
      code: 1,
      message: new RegExp(
        `^decode: Cannot read safetensors ".*decoder\\.safetensors": tensor "${victim}" data \\[\\d+, \\d+\\) overlaps tensor "${
          names[0]
        }"`,
      ),
    });
    assert.deepEqual(await listDir(dir), ["decoder.safetensors", "tokenizer.json"]);
  });
});

Deno.test("tokenize with --out naming a file: one line, exit 2, the file untouched", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/out`, "mine");
    const r = await runBounded([
      "run",
      "-A",
      "tasks/tokenize.ts",
      "--tokenizer",
      `${ROOT}/data/fmnist8`,
      "--out",
      `${dir}/out`,
      "--backend",
      "cpu",
    ]);
    assertRefused(r, {
      code: 2,
      message: /^tokenize: Cannot write to --out ".*\/out": it is a file, not a folder$/,
    });
    assert.equal(await Deno.readTextFile(`${dir}/out`), "mine");
  });
});

Deno.test("writeTokenDataset into a missing folder names the user's path, and leaves nothing", async () => {
  await withTempDir(async (dir) => {
    const codes = new Int32Array(2 * 4);
    await assert.rejects(
      () => writeTokenDataset(`${dir}/no/x-token.data.bin.gz`, codes, { gridSide: 2 }),
      {
        name: "NotFound",
        message:
          `Cannot write token data "${dir}/no/x-token.data.bin.gz": folder "${dir}/no" does not exist`,
      },
    );
    await assert.rejects(
      () =>
        writeTokenDataset(`${dir}/y-token.data.bin.gz`, codes, { gridSide: 2, labels: [0, -1] }),
      { name: "RangeError", message: /Cannot use label -1 for record 1: expected a class index/ },
    );
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("tokenize finds a bad label file of its second set before writing anything", async () => {
  await withTempDir(async (dir) => {
    // two sets: the first fine, the second's labels hold -1 on line 3
    const idx = new Uint8Array([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]);
    const images = new Uint8Array(idx.length + 2 * 28 * 28);
    images.set(idx);
    await Deno.writeFile(`${dir}/a-images`, images);
    await Deno.writeTextFile(`${dir}/a.txt`, "1\n2\n");
    await Deno.writeTextFile(`${dir}/b.txt`, "1\n2\n-1\n");
    await Deno.mkdir(`${dir}/out`);
    const r = await runBounded([
      "run",
      "-A",
      "tasks/tokenize.ts",
      "--tokenizer",
      `${ROOT}/data/fmnist8`,
      "--out",
      `${dir}/out`,
      "--backend",
      "cpu",
      "--images",
      `${dir}/a-images`,
      "--labels",
      `${dir}/a.txt`,
      "--name",
      "a",
      "--images",
      `${dir}/a-images`,
      "--labels",
      `${dir}/b.txt`,
      "--name",
      "b",
    ]);
    assertRefused(r, {
      code: 1,
      message:
        /^tokenize: Cannot read labels ".*b\.txt": line 3 holds -1; a label is a class index, 0 or more$/,
    });
    assert.deepEqual(await listDir(`${dir}/out`), []);
  });
});
