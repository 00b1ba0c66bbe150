/**
 * The acceptance of the export half: weights written for PyTorch load back identical here,
 * Debian's python3-torch 1.13 reads them with `weights_only=True` bit for bit, and a PyTorch
 * token classifier built from them gives our logits (max abs error <= 1e-5).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { exportForAuthors } from "@lib/bridge";
import {
  bytesOf,
  flattenTensors,
  type HostTensor,
  PyDict,
  readSafetensorsFile,
  readTorchFile,
  stateDictOf,
  writeSafetensorsFile,
  writeTorch,
} from "@lib/io";
import { TokenClassifier } from "@lib/models";
import { Rng } from "@lib/random";
import { resolveRun } from "../../tasks/_train_cli.ts";
import { parityPath } from "../_support/fixtures.ts";
import { torchHelper } from "../_support/torch_python.ts";

await initBackend({ backend: "cpu" });

function assertSame(got: Map<string, HostTensor>, want: Map<string, HostTensor>, what: string) {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), what);
  for (const [k, w] of want) {
    const g = got.get(k)!;
    assert.equal(g.dtype, w.dtype, `${what} ${k}`);
    assert.deepEqual(g.shape, w.shape, `${what} ${k}`);
    assert.deepEqual(bytesOf(g.data), bytesOf(w.data), `${what} ${k}`);
  }
}

/** A small classifier whose every parameter (biases, norms, positions too) is random. */
function randomClassifier(): TokenClassifier {
  const model = new TokenClassifier({
    gridSide: 8,
    patchSize: 2,
    codebookSize: 64,
    tokenDim: 16,
    numClasses: 10,
    embedDim: 32,
    depth: 2,
    numHeads: 4,
    globalPool: true,
  }, new Rng(1));
  const rng = new Rng(2);
  const sd = model.params.stateDict();
  for (const [name, t] of sd) {
    const d = t.data as Float32Array;
    const shift = /norm.*\.weight$|LayerNorm\.weight$/.test(name) ? 1 : 0;
    for (let i = 0; i < d.length; i++) d[i] = shift + 0.3 * rng.normal();
  }
  const report = model.params.loadStateDict(sd);
  assert.deepEqual([report.missing, report.unexpected], [[], []]);
  return model;
}

Deno.test("a classifier's weights: identical when read back, bit-exact in torch.load(weights_only=True), same logits in PyTorch", async () => {
  const dir = await Deno.makeTempDir();
  const tensorsBefore = tf.memory().numTensors;
  const model = randomClassifier();
  try {
    const sd = model.params.stateDict();
    const pth = `${dir}/model.pth`;
    await Deno.writeFile(pth, writeTorch(new PyDict("dict", [["model", stateDictOf(sd)]])));
    // 1. our reader gives the same tensors back
    const back = flattenTensors(await readTorchFile(pth)).tensors;
    assertSame(
      new Map([...back].map(([k, v]) => [k.replace(/^model\./, ""), v])),
      sd,
      "read back",
    );
    // 2. torch.load(weights_only=True), bit for bit
    await writeSafetensorsFile(`${dir}/ref.safetensors`, sd);
    const check = JSON.parse(await torchHelper("check", pth, `${dir}/ref.safetensors`));
    assert.equal(check.type, "OrderedDict");
    assert.deepEqual(check.keys, [...sd.keys()]);
    assert.deepEqual([check.mismatched, check.unexpected], [[], []]);
    // 3. logits of a PyTorch classifier built from those tensors
    const rng = new Rng(3);
    const codes = new Int32Array(6 * 8 * 8).map(() => rng.int(0, 64));
    await writeSafetensorsFile(`${dir}/codes.safetensors`, {
      codes: { dtype: "int32", shape: [6, 8, 8], data: codes },
    });
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(model.config));
    await torchHelper(
      "logits",
      pth,
      `${dir}/config.json`,
      `${dir}/codes.safetensors`,
      `${dir}/logits.safetensors`,
    );
    const theirs = (await readSafetensorsFile(`${dir}/logits.safetensors`)).tensors.get("logits")!;
    const x = tf.tensor3d(codes, [6, 8, 8], "int32");
    const ours = model.forward(x);
    const o = await ours.data() as Float32Array;
    tf.dispose([x, ours]);
    assert.deepEqual(theirs.shape, [6, 10]);
    let maxErr = 0, maxAbs = 0;
    const t = theirs.data as Float32Array;
    for (let i = 0; i < o.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(o[i] - t[i]));
      maxAbs = Math.max(maxAbs, Math.abs(t[i]));
    }
    assert.ok(maxAbs > 0.1, `logits too small to compare (${maxAbs})`);
    assert.ok(maxErr <= 1e-5, `max abs error ${maxErr}`);
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("torch:export's files (codebook, TokenAdapt, init, run weights) load in torch with weights_only=True, bit-exact", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const init = (await readSafetensorsFile(parityPath("mtm_params.safetensors"))).tensors;
    await writeSafetensorsFile(`${dir}/init.safetensors`, init);
    const { config } = await resolveRun("finetune", {
      config: "configs/finetune_official.json",
      overrides: [
        ["augment", "seitpp"],
        ["codebook", parityPath("codebook.ckpt")],
        ["tokenAdaptWeights", parityPath("tokenadapt.safetensors")],
        ["init", `${dir}/init.safetensors`],
      ],
      help: false,
    });
    const run = (await readSafetensorsFile(parityPath("cls_head.safetensors"))).tensors;
    const out = `${dir}/export`;
    const r = await exportForAuthors(config as never, { out, weights: run, gpus: 8 });
    assert.deepEqual(r.files, [
      "authors_args.json",
      "codebook.ckpt",
      "command.sh",
      "model.pth",
      "pretrained.pth",
      "tokenadapt.ckpt",
    ]);
    const cases: [string, string][] = [
      ["codebook.ckpt", parityPath("codebook.safetensors")],
      ["tokenadapt.ckpt", parityPath("tokenadapt.safetensors")],
      ["pretrained.pth", `${dir}/init.safetensors`],
      ["model.pth", parityPath("cls_head.safetensors")],
    ];
    const lines = (await torchHelper("check", ...cases.flatMap(([f, ref]) => [`${out}/${f}`, ref])))
      .trim().split("\n");
    assert.equal(lines.length, cases.length);
    lines.forEach((line, i) => {
      const check = JSON.parse(line);
      assert.deepEqual([check.mismatched, check.unexpected], [[], []], cases[i][0]);
      assert.ok(check.keys.length > 0, cases[i][0]);
    });
    const sh = await Deno.readTextFile(`${out}/command.sh`);
    assert.match(sh, /^#!\/bin\/sh\n/);
    assert.match(
      sh,
      /torchrun --nproc_per_node=8 main_mtm_finetune\.py \\\n {2}--model deit_base_token_32 \\/,
    );
    assert.match(sh, / {2}--finetune pretrained\.pth \\\n/);
    assert.match(sh, / {2}--tokenadapt-path tokenadapt\.ckpt \\\n/);
    assert.ok((await Deno.stat(`${out}/command.sh`)).mode! & 0o100);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
