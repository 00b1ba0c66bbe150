import assert from "node:assert/strict";
import { flattenTensors, readSafetensorsFile, readTorchFile, writeSafetensorsFile } from "@lib/io";
import { resolveRun } from "../../tasks/_train_cli.ts";
import { parityPath } from "../_support/fixtures.ts";
import { torchHelper } from "../_support/torch_python.ts";

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

Deno.test("deno task torch:export of a run folder writes its weights as model.pth; torch:import brings a run back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { config } = await resolveRun("finetune", {
      config: "configs/finetune_official.json",
      overrides: [
        ["augment", "seitpp"],
        ["codebook", parityPath("codebook.ckpt")],
        ["tokenAdaptWeights", parityPath("tokenadapt.safetensors")],
        // the official config's init is a pre-training run that is not here
        ["init", parityPath("mtm_params.safetensors")],
      ],
      help: false,
    });
    await Deno.mkdir(`${dir}/run`);
    await Deno.writeTextFile(`${dir}/run/config.json`, JSON.stringify(config));
    const weights = (await readSafetensorsFile(parityPath("cls_head.safetensors"))).tensors;
    await writeSafetensorsFile(`${dir}/run/model.safetensors`, weights);
    const ex = await task("torch:export", `${dir}/run`, "--out", `${dir}/x`, "--gpus", "2");
    assert.equal(ex.code, 0, ex.stderr);
    const back = flattenTensors(await readTorchFile(`${dir}/x/model.pth`)).tensors;
    assert.deepEqual([...back.keys()], [...weights.keys()].map((k) => `model.${k}`));
    assert.match(
      await Deno.readTextFile(`${dir}/x/command.sh`),
      /--batch_size 512 \\\n {2}--accum_iter 1 \\/, // 1024 = 512 x 1 x 2 GPUs
    );

    await torchHelper("craft-run", `${dir}/authors`, parityPath("tiny-train-token.data.bin.gz"));
    const im = await task(
      "torch:import",
      `${dir}/authors`,
      "--out",
      `${dir}/runs`,
      "--id",
      "cluster",
    );
    assert.equal(im.code, 0, im.stderr);
    assert.match(im.stdout, /finetune run -> .*cluster: 3 epochs, 6 steps\/epoch; 2 tensors from/);
    const again = await task(
      "torch:import",
      `${dir}/authors`,
      "--out",
      `${dir}/runs`,
      "--id",
      "cluster",
    );
    assert.equal(again.code, 1);
    assert.match(again.stderr, /error: AlreadyExists: Run folder .* exists/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
