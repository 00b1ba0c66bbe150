import assert from "node:assert/strict";
import type { HostTensor } from "@lib/io";
import {
  CHECKPOINT_JSON,
  CheckpointError,
  type CheckpointFs,
  type CheckpointInput,
  loadCheckpoint,
  readModelWeights,
  saveCheckpoint,
  weightsFileName,
} from "@lib/train";

function model(v: number): Map<string, HostTensor> {
  return new Map<string, HostTensor>([
    ["blocks.0.attn.qkv.weight", {
      dtype: "float32",
      shape: [2, 2],
      data: new Float32Array(4).fill(v),
    }],
    ["cls_token", { dtype: "float32", shape: [1, 1, 2], data: new Float32Array([v, -v]) }],
  ]);
}
const moments = new Map<string, HostTensor>([
  ["optimizer.exp_avg.cls_token", {
    dtype: "float32",
    shape: [1, 1, 2],
    data: new Float32Array([1, 2]),
  }],
  ["optimizer.exp_avg_sq.cls_token", {
    dtype: "float32",
    shape: [1, 1, 2],
    data: new Float32Array([3, 4]),
  }],
]);
function input(step: number): CheckpointInput {
  return {
    step,
    epoch: 1,
    iter: 3,
    config: { seed: 7 },
    rng: { data: [1, 2, 3, 4] },
    optimizer: null,
    lr: 1e-4,
    extra: { note: "x" },
  };
}

Deno.test("saveCheckpoint -> loadCheckpoint round-trips model, moments and state", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveCheckpoint(dir, model(1.5), moments, input(10));
    const ck = await loadCheckpoint(dir);
    assert.equal(ck.state.step, 10);
    assert.deepEqual(ck.state.rng, { data: [1, 2, 3, 4] });
    assert.equal(ck.state.weights, weightsFileName(10));
    assert.deepEqual([...ck.model.keys()].sort(), ["blocks.0.attn.qkv.weight", "cls_token"]);
    assert.deepEqual(Array.from(ck.model.get("cls_token")!.data as Float32Array), [1.5, -1.5]);
    assert.deepEqual(
      Array.from(ck.optimizer.get("optimizer.exp_avg_sq.cls_token")!.data as Float32Array),
      [3, 4],
    );
    // a second save replaces the first and removes its weights file
    await saveCheckpoint(dir, model(2), moments, input(20));
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), [CHECKPOINT_JSON, weightsFileName(20)].sort());
    const w = await readModelWeights(dir);
    assert.deepEqual([...w.tensors.keys()].sort(), ["blocks.0.attn.qkv.weight", "cls_token"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A file system that fails on the n-th write, after writing half the bytes. */
function failingFs(failAt: number, phase: "write" | "rename"): CheckpointFs {
  let writes = 0, renames = 0;
  return {
    async writeFile(path, bytes) {
      if (phase === "write" && ++writes === failAt) {
        await Deno.writeFile(path, bytes.subarray(0, bytes.length >> 1));
        throw new Error("simulated crash while writing");
      }
      await Deno.writeFile(path, bytes);
    },
    async rename(a, b) {
      if (phase === "rename" && ++renames === failAt) {
        throw new Error("simulated crash before rename");
      }
      await Deno.rename(a, b);
    },
  };
}

Deno.test("a crash at any point of a save leaves the previous checkpoint intact", async () => {
  // write 1 / rename 1: the weights file; write 2 / rename 2: checkpoint.json
  for (
    const [failAt, phase] of [[1, "write"], [2, "write"], [1, "rename"], [2, "rename"]] as const
  ) {
    const dir = await Deno.makeTempDir();
    try {
      await saveCheckpoint(dir, model(1), moments, input(5));
      await assert.rejects(
        () => saveCheckpoint(dir, model(9), moments, input(6), { fs: failingFs(failAt, phase) }),
        /simulated crash/,
      );
      const ck = await loadCheckpoint(dir);
      assert.equal(ck.state.step, 5, `${phase} ${failAt}`);
      assert.deepEqual(Array.from(ck.model.get("cls_token")!.data as Float32Array), [1, -1]);
      // no temporary files are left behind
      for await (const e of Deno.readDir(dir)) assert.ok(!e.name.endsWith(".tmp"), e.name);
      // and the next save works and cleans up
      await saveCheckpoint(dir, model(3), moments, input(7));
      assert.equal((await loadCheckpoint(dir)).state.step, 7);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("loadCheckpoint detects a corrupted weights file by its checksum", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveCheckpoint(dir, model(1), moments, input(4));
    const path = `${dir}/${weightsFileName(4)}`;
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 1] ^= 0xff;
    await Deno.writeFile(path, bytes);
    await assert.rejects(() => loadCheckpoint(dir), (e) => {
      assert.ok(e instanceof CheckpointError);
      assert.match(
        e.message,
        /^Cannot load ".*checkpoint-00000004\.safetensors": SHA-256 [0-9a-f]{64} differs from/,
      );
      return true;
    });
    await assert.rejects(() => loadCheckpoint(`${dir}/nothing`), {
      name: "CheckpointError",
      message: `No checkpoint at "${dir}/nothing": ${dir}/nothing/checkpoint.json does not exist`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveCheckpoint refuses model names in the optimizer namespace", async () => {
  const bad = new Map<string, HostTensor>([["optimizer.x", {
    dtype: "float32",
    shape: [1],
    data: new Float32Array(1),
  }]]);
  await assert.rejects(() => saveCheckpoint("/nonexistent", bad, new Map(), input(1)), {
    name: "TypeError",
    message: 'Cannot save model tensor "optimizer.x": the "optimizer." prefix is reserved',
  });
});
