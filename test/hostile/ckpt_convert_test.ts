/**
 * Hostile input for `ckpt:convert` and the torch reader: data loss (output onto the
 * input), non-torch files, files that would take gigabytes or minutes.
 */
import assert from "node:assert/strict";
import { zipSync } from "fflate";
import { writeSafetensors } from "@lib/io";
import { f32Bytes, pickle, type PV, tensorPV, torchZip } from "../io/_pickler.ts";
import { assertRefused, listDir, runBounded, withTempDir } from "./_run.ts";

const TASK = "tasks/ckpt_convert.ts";
const convert = (...args: string[]) => runBounded(["run", "-A", TASK, ...args]);

async function sha(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A valid torch zip of one 4-element tensor. */
function smallCkpt(): Uint8Array {
  return torchZip(tensorPV("0", "FloatStorage", 4, 0, [4], [1]), { "0": f32Bytes([1, 2, 3, 4]) });
}

Deno.test("ckpt:convert X X refuses to overwrite its input: same path, other spelling, symlink, hard link", async () => {
  await withTempDir(async (dir) => {
    const x = `${dir}/X.ckpt`;
    await Deno.writeFile(x, smallCkpt());
    await Deno.symlink(x, `${dir}/link.ckpt`);
    await Deno.link(x, `${dir}/hard.ckpt`);
    const before = await sha(x);
    const spellings = [x, `${dir}/./X.ckpt`, `${dir}/../${dir.split("/").pop()}/X.ckpt`];
    for (const out of [...spellings, `${dir}/link.ckpt`, `${dir}/hard.ckpt`]) {
      const r = await convert(x, out);
      assertRefused(r, {
        code: 2,
        message: /^ckpt:convert: Refusing to write ".*": it is the input/,
      });
      assert.equal(await sha(x), before, `input changed by ckpt:convert X ${out}`);
    }
    // the symlink as the input, the real file as the output
    assertRefused(await convert(`${dir}/link.ckpt`, x), { code: 2, message: /it is the input/ });
    assert.equal(await sha(x), before);
    assert.deepEqual(await listDir(dir), ["X.ckpt", "hard.ckpt", "link.ckpt"]);
  });
});

Deno.test("ckpt:convert on a safetensors file says 'not a torch.save file' and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const st = writeSafetensors(
      new Map([["w", { dtype: "float32" as const, shape: [2], data: new Float32Array([1, 2]) }]]),
    );
    await Deno.writeFile(`${dir}/m.safetensors`, st);
    const r = await convert(`${dir}/m.safetensors`, `${dir}/out.safetensors`);
    assertRefused(r, {
      code: 2,
      message:
        /^ckpt:convert: Cannot read ".*m\.safetensors": not a torch\.save file \(neither a zip archive nor a pickle; it starts with [0-9a-f ]+\)$/,
    });
    assert.deepEqual(await listDir(dir), ["m.safetensors"]);
  });
});

Deno.test("a failed ckpt:convert leaves an existing output untouched", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/bad.ckpt`, new Uint8Array([0x50, 0x4b, 3, 4, 0, 0, 0]));
    await Deno.writeTextFile(`${dir}/out.safetensors`, "previous result");
    const r = await convert(`${dir}/bad.ckpt`, `${dir}/out.safetensors`);
    assertRefused(r, { code: 2, message: /^ckpt:convert: Cannot read torch file ".*bad\.ckpt": / });
    assert.equal(await Deno.readTextFile(`${dir}/out.safetensors`), "previous result");
    assert.deepEqual(await listDir(dir), ["bad.ckpt", "out.safetensors"]);
  });
});

Deno.test("ckpt:convert into a missing folder or onto a folder names the user's path, not a .tmp file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/X.ckpt`, smallCkpt());
    let r = await convert(`${dir}/X.ckpt`, `${dir}/nope/out.safetensors`);
    let line = assertRefused(r, {
      code: 2,
      message:
        /^ckpt:convert: Cannot write output ".*\/nope\/out\.safetensors": folder ".*\/nope" does not exist$/,
    });
    assert.doesNotMatch(line, /\.tmp/);
    await Deno.mkdir(`${dir}/sub`);
    r = await convert(`${dir}/X.ckpt`, `${dir}/sub`);
    line = assertRefused(r, {
      code: 2,
      message: /^ckpt:convert: Cannot write output ".*\/sub": it is a directory$/,
    });
    assert.deepEqual(await listDir(dir), ["X.ckpt", "sub"]);
    assert.deepEqual(await listDir(`${dir}/sub`), []);
    // a folder as the input
    r = await convert(`${dir}/sub`, `${dir}/o.safetensors`);
    assertRefused(r, {
      code: 1,
      message: /^ckpt:convert: Cannot read torch file ".*\/sub": it is a directory, not a file$/,
    });
  });
});

Deno.test("a 28 KB torch zip of 200 broadcast views, each under the per-view limit, is refused by the per-file total", async () => {
  await withTempDir(async (dir) => {
    // every view: 4M float32 (16 MiB, under the 64 MiB per-view limit) over one element
    const views: PV[] = [];
    for (let i = 0; i < 200; i++) views.push(tensorPV("0", "FloatStorage", 1, 0, [2 ** 22], [0]));
    const z = torchZip({ list: views }, { "0": f32Bytes([7]) });
    assert.ok(z.length < 32_000, `${z.length} bytes`);
    await Deno.writeFile(`${dir}/views.pth`, z);
    const r = await convert(`${dir}/views.pth`, `${dir}/o.safetensors`);
    assertRefused(r, {
      code: 2,
      message:
        /^ckpt:convert: Cannot read torch file ".*views\.pth": its 200 tensors expand past the \d+ bytes its storages justify/,
    });
    assert.deepEqual(await listDir(dir), ["views.pth"]);
  });
});

/** A torch zip whose data/0 entry is deflated, with its declared size patched. */
function lyingZip(actual: Uint8Array, declared: number, numel: number): Uint8Array {
  const z = zipSync({
    "archive/data.pkl": pickle(tensorPV("0", "FloatStorage", numel, 0, [numel], [1])),
    "archive/data/0": actual,
  }, { level: 6 });
  const v = new DataView(z.buffer);
  let patched = 0;
  for (let p = 0; p + 46 <= z.length; p++) {
    if (v.getUint32(p, true) !== 0x02014b50) continue;
    const n = v.getUint16(p + 28, true);
    if (new TextDecoder().decode(z.subarray(p + 46, p + 46 + n)) === "archive/data/0") {
      v.setUint32(p + 24, declared, true);
      patched++;
    }
  }
  assert.equal(patched, 1);
  return z;
}

Deno.test("a zip entry lying about its uncompressed size stops at the declared size with an error", async () => {
  await withTempDir(async (dir) => {
    // 64 MiB of zeros deflate to ~64 KB; the entry says 4000 bytes
    const big = new Uint8Array(64 * 2 ** 20);
    await Deno.writeFile(`${dir}/smaller.pth`, lyingZip(big, 4000, 1000));
    let r = await convert(`${dir}/smaller.pth`, `${dir}/o.safetensors`);
    assertRefused(r, {
      code: 2,
      message:
        /^ckpt:convert: Cannot read torch file ".*smaller\.pth": entry "archive\/data\/0" inflates past its declared 4000 bytes$/,
    });
    // and one that declares more than it holds
    await Deno.writeFile(`${dir}/larger.pth`, lyingZip(new Uint8Array(4000), 8000, 2000));
    r = await convert(`${dir}/larger.pth`, `${dir}/o.safetensors`);
    assertRefused(r, {
      code: 2,
      message:
        /^ckpt:convert: Cannot read torch file ".*larger\.pth": entry "archive\/data\/0" inflates to 4000 bytes, not its declared 8000$/,
    });
    assert.deepEqual(await listDir(dir), ["larger.pth", "smaller.pth"]);
  });
});
