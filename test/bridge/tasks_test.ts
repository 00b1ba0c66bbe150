import assert from "node:assert/strict";
import { parityPath } from "../_support/fixtures.ts";

async function task(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const td = new TextDecoder();
  return { code: out.code, stdout: td.decode(out.stdout), stderr: td.decode(out.stderr) };
}

Deno.test("deno task torch:export: a config file with overrides gives command.sh; a refusal is one line, exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ok = await task(
      "torch:export",
      "configs/pretrain_official.json",
      "--out",
      `${dir}/x`,
      "--gpus",
      "4",
      "--data-root",
      "/data/tokens",
      "--model.decoderDepth=4",
      "--batchSize=128",
      "--accumIter=32",
      "--augment=seitpp",
      `--codebook=${parityPath("codebook.ckpt")}`,
      `--tokenAdaptWeights=${parityPath("tokenadapt.ckpt")}`,
    );
    assert.equal(ok.code, 0, ok.stderr);
    const sh = await Deno.readTextFile(`${dir}/x/command.sh`);
    assert.match(sh, /torchrun --nproc_per_node=4 main_mtm_pretrain\.py/);
    assert.match(sh, /--batch_size 128 \\\n {2}--accum_iter 8 \\/);
    assert.match(sh, /--train-token-file \/data\/tokens\/imagenet1k-train-token\.data\.bin\.gz/);
    assert.match(ok.stderr, /not passed: logEvery 100/);
    const bad = await task(
      "torch:export",
      "configs/pretrain_official.json",
      "--out",
      `${dir}/y`,
      "--maxSteps=10",
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /error: UnmappableSettingError: Cannot export "maxSteps"/);
    await assert.rejects(() => Deno.stat(`${dir}/y`), Deno.errors.NotFound);
    const usage = await task("torch:export", "configs/pretrain_official.json");
    assert.equal(usage.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
