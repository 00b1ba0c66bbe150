import assert from "node:assert/strict";
import { bytesOf, readSafetensorsFile } from "@lib/io";
import { parityPath } from "../_support/fixtures.ts";
import { tensorPV, torchZip } from "./_pickler.ts";

const TASK = new URL("../../tasks/ckpt_convert.ts", import.meta.url).pathname;
const meta = JSON.parse(await Deno.readTextFile(parityPath("meta.json")));

async function convert(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", TASK, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("ckpt:convert turns the four parity checkpoints into their safetensors, bit for bit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases = [
      ["codebook.ckpt", "codebook.safetensors"],
      ["codebook_legacy.ckpt", "codebook.safetensors"],
      ["tokenadapt.ckpt", "tokenadapt.safetensors"],
      ["checkpoint.pth", "checkpoint_tensors.safetensors"],
    ];
    for (const [input, reference] of cases) {
      const out = `${dir}/${input}.safetensors`;
      const r = await convert(parityPath(input), out);
      assert.equal(r.code, 0, r.stderr);
      const got = await readSafetensorsFile(out);
      let want = (await readSafetensorsFile(parityPath(reference))).tensors;
      if (input.startsWith("codebook")) {
        // a bare tensor is named after the input file: codebook_legacy.ckpt -> codebook_legacy
        const stem = input.replace(".ckpt", "");
        want = new Map([[stem, want.get("codebook")!]]);
      }
      assert.deepEqual([...got.tensors.keys()].sort(), [...want.keys()].sort(), input);
      for (const [k, w] of want) {
        const g = got.tensors.get(k)!;
        assert.equal(g.dtype, w.dtype);
        assert.deepEqual(g.shape, w.shape);
        assert.deepEqual(bytesOf(g.data), bytesOf(w.data), `${input}: ${k}`);
      }
      if (input === "checkpoint.pth") {
        const m = got.metadata;
        assert.deepEqual(JSON.parse(m.epoch), meta.checkpoint.epoch);
        assert.deepEqual(JSON.parse(m.scaler), meta.checkpoint.scaler);
        assert.deepEqual(JSON.parse(m.args), meta.checkpoint.args);
        assert.deepEqual(JSON.parse(m.optimizer), {
          param_groups: meta.checkpoint.optimizer_param_groups,
        });
      } else {
        assert.deepEqual(got.metadata, {});
      }
    }
    // --name names a bare tensor
    const r = await convert(parityPath("codebook.ckpt"), `${dir}/n.safetensors`, "--name", "cb");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...(await readSafetensorsFile(`${dir}/n.safetensors`)).tensors.keys()], [
      "cb",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ckpt:convert exits 2 with one line and writes nothing for malicious or malformed input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const mal = parityPath("malicious.ckpt");
    const r = await convert(mal, `${dir}/m.safetensors`);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `ckpt:convert: Refusing "${mal}": global os.system is not allowed\n`,
    );
    assert.equal(r.stdout, "");
    assert.equal(await exists(`${dir}/m.safetensors`), false);

    const broken = `${dir}/broken.pth`;
    await Deno.writeFile(
      broken,
      torchZip(tensorPV("0", "FloatStorage", 4, 0, [4], [1]), {}),
    );
    const b = await convert(broken, `${dir}/b.safetensors`);
    assert.equal(b.code, 2);
    assert.equal(
      b.stderr,
      `ckpt:convert: Cannot read torch file "${broken}": zip entry "archive/data/0" is missing\n`,
    );
    assert.equal(await exists(`${dir}/b.safetensors`), false);
    // nothing left behind in the folder (no temporary files either)
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["broken.pth"]);

    const u = await convert("only-one-arg");
    assert.equal(u.code, 2);
    assert.match(u.stderr, /^ckpt:convert: usage: deno task ckpt:convert/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
