import assert from "node:assert/strict";
import { inNewRunFolder, removeFailedStart } from "../../tasks/_run_folder.ts";

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

Deno.test("inNewRunFolder removes the run folder (and a runs folder it made) when the run fails before a checkpoint", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    let made = "";
    await assert.rejects(
      inNewRunFolder(`${tmp}/runs`, "pretrain", async (dir) => {
        made = dir;
        await Deno.writeTextFile(`${dir}/log.jsonl`, "{}\n");
        throw new RangeError("late failure");
      }),
      RangeError,
    );
    assert.match(made, /\/runs\/\d{8}-\d{6}-pretrain$/);
    assert.ok(!(await exists(`${tmp}/runs`)));
    // a runs folder that existed stays, with what it held
    await Deno.mkdir(`${tmp}/mine`);
    await Deno.writeTextFile(`${tmp}/mine/notes.txt`, "mine");
    await assert.rejects(
      inNewRunFolder(`${tmp}/mine`, "finetune", () => Promise.reject(new TypeError("x"))),
      TypeError,
    );
    assert.deepEqual(await names(`${tmp}/mine`), ["notes.txt"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("inNewRunFolder keeps a run that saved a checkpoint before it failed (it can be resumed)", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    let made = "";
    await assert.rejects(
      inNewRunFolder(tmp, "pretrain", async (dir) => {
        made = dir;
        await Deno.writeTextFile(`${dir}/checkpoint.json`, "{}");
        throw new Error("NaN at step 40");
      }),
      /NaN at step 40/,
    );
    assert.deepEqual(await names(made), ["checkpoint.json"]);
    assert.equal(await inNewRunFolder(tmp, "ok", () => Promise.resolve(7)), 7);
    assert.equal((await names(tmp)).length, 2);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("removeFailedStart never removes a folder that existed before the run", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    assert.equal(await removeFailedStart(tmp, true), false);
    assert.ok(await exists(tmp));
    await Deno.mkdir(`${tmp}/new`);
    assert.equal(await removeFailedStart(`${tmp}/new`, false), true);
    assert.ok(!(await exists(`${tmp}/new`)));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
