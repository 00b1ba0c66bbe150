import assert from "node:assert/strict";
import {
  applyOverrides,
  type ConfigSchema,
  mergeConfig,
  parseTaskArgs,
  withAddedRunKeys,
} from "@lib/train";

const BASE = {
  seed: 0,
  epochs: 10,
  blr: 1.5e-4,
  lrScaling: "linear",
  gradClip: null as number | null,
  betas: [0.9, 0.95],
  amp: false,
  model: { depth: 4, embedDim: 192 },
};
const SCHEMA: ConfigSchema = {
  nullable: { gradClip: "number" },
  choices: { lrScaling: ["linear", "sqrt", "none"] },
  integers: ["epochs", "model.depth"],
};

Deno.test("applyOverrides parses each value as its key's type, nested keys included", () => {
  const c = applyOverrides(BASE, [
    ["epochs", "3"],
    ["blr", "1e-3"],
    ["gradClip", "3.0"],
    ["betas", "[0.9,0.999]"],
    ["amp", "true"],
    ["model.depth", "2"],
    ["lrScaling", "sqrt"],
  ], SCHEMA);
  assert.deepEqual(c, {
    ...BASE,
    epochs: 3,
    blr: 1e-3,
    gradClip: 3,
    betas: [0.9, 0.999],
    amp: true,
    model: { depth: 2, embedDim: 192 },
    lrScaling: "sqrt",
  });
  assert.equal(BASE.epochs, 10, "the base config is not modified");
  assert.equal(applyOverrides(c, [["gradClip", "null"]], SCHEMA).gradClip, null);
});

Deno.test("applyOverrides refuses unknown keys, naming the key and the known keys", () => {
  assert.throws(() => applyOverrides(BASE, [["epoch", "3"]], SCHEMA), {
    name: "TypeError",
    message:
      /^Unknown config key "epoch"; known keys: seed, epochs, blr, lrScaling, gradClip, betas, amp, model\.depth, model\.embedDim$/,
  });
  assert.throws(() => applyOverrides(BASE, [["model.width", "3"]], SCHEMA), {
    name: "TypeError",
    message: /^Unknown config key "model.width"/,
  });
});

Deno.test("applyOverrides refuses values of the wrong type, naming key and value", () => {
  assert.throws(() => applyOverrides(BASE, [["epochs", "three"]], SCHEMA), {
    name: "TypeError",
    message: 'Config key "epochs": expected integer, got "three"',
  });
  assert.throws(() => applyOverrides(BASE, [["epochs", "2.5"]], SCHEMA), {
    name: "TypeError",
    message: 'Config key "epochs" (in --epochs): expected integer, got 2.5',
  });
  assert.throws(() => applyOverrides(BASE, [["amp", "yes"]], SCHEMA), {
    name: "TypeError",
    message: 'Config key "amp": expected true or false, got "yes"',
  });
  assert.throws(() => applyOverrides(BASE, [["betas", "[0.9]"]], SCHEMA), {
    name: "TypeError",
    message: 'Config key "betas" (in --betas): expected 2 numbers, got [0.9]',
  });
  assert.throws(() => applyOverrides(BASE, [["blr", "null"]], SCHEMA), {
    name: "TypeError",
    message: 'Config key "blr" (in --blr): expected number, got null',
  });
  assert.throws(() => applyOverrides(BASE, [["lrScaling", "cubic"]], SCHEMA), {
    name: "RangeError",
    message:
      'Config key "lrScaling" (in --lrScaling): "cubic" is not one of "linear", "sqrt", "none"',
  });
  assert.throws(() => applyOverrides(BASE, [["model", "3"]], SCHEMA), {
    name: "TypeError",
    message: 'Config key "model" (in --model): expected an object, got 3',
  });
});

Deno.test("mergeConfig checks a config file's keys and types, naming the file", () => {
  const c = mergeConfig(BASE, { model: { depth: 1 }, gradClip: 1 }, SCHEMA, "configs/x.json");
  assert.equal(c.model.depth, 1);
  assert.equal(c.model.embedDim, 192);
  assert.throws(() => mergeConfig(BASE, { modle: {} }, SCHEMA, "configs/x.json"), {
    name: "TypeError",
    message: /^Unknown config key "modle" \(in configs\/x\.json\); known keys: /,
  });
  assert.throws(() => mergeConfig(BASE, { blr: "0.1" }, SCHEMA, "configs/x.json"), {
    name: "TypeError",
    message: 'Config key "blr" (in configs/x.json): expected number, got "0.1"',
  });
});

Deno.test("parseTaskArgs separates flags from --key=value overrides", () => {
  const a = parseTaskArgs([
    "--config",
    "configs/pretrain_demo.json",
    "--backend=cpu",
    "--resume",
    "runs/x",
    "--data=d.bin.gz",
    "--out",
    "o",
    "--epochs=2",
    "--model.depth=1",
  ]);
  assert.deepEqual(a, {
    help: false,
    config: "configs/pretrain_demo.json",
    backend: "cpu",
    resume: "runs/x",
    data: "d.bin.gz",
    out: "o",
    overrides: [["epochs", "2"], ["model.depth", "1"]],
  });
  assert.throws(() => parseTaskArgs(["--epochs"]), {
    name: "SyntaxError",
    message: 'Config override "--epochs" needs a value: --epochs=<value>',
  });
  assert.throws(() => parseTaskArgs(["--backend"]), {
    name: "SyntaxError",
    message: "Option --backend needs a value",
  });
  assert.throws(() => parseTaskArgs(["epochs=2"]), { name: "SyntaxError" });
  assert.equal(parseTaskArgs(["-h"]).help, true);
});

Deno.test("every configs/{pretrain,finetune}_*.json resolves against its recipe and model", async () => {
  const { resolveRun } = await import("../../tasks/_train_cli.ts");
  const root = new URL("../../configs/", import.meta.url);
  let n = 0;
  for await (const e of Deno.readDir(root)) {
    const m = /^(pretrain|finetune)_.*\.json$/.exec(e.name);
    if (!m) continue;
    const path = decodeURIComponent(new URL(e.name, root).pathname);
    const r = await resolveRun(m[1] as "pretrain", parseTaskArgs([`--config=${path}`]));
    assert.equal(r.config.kind, m[1], e.name);
    assert.equal(r.config.gradClip, null, `${e.name}: the reference never clips`);
    n++;
  }
  assert.ok(n >= 4, `${n} configs`);
});

Deno.test("withAddedRunKeys: an older run config gets workers = 1; present keys and non-objects stay", () => {
  assert.deepEqual(withAddedRunKeys({ seed: 0 }), { seed: 0, workers: 1 });
  assert.deepEqual(withAddedRunKeys({ seed: 0, workers: 2 }), { seed: 0, workers: 2 });
  assert.deepEqual(
    withAddedRunKeys({ seed: 0 }, { seed: 1 }),
    { seed: 0 },
    "only keys the reference has",
  );
  assert.deepEqual(withAddedRunKeys({ seed: 0 }, { workers: 1 }), { seed: 0, workers: 1 });
  assert.equal(withAddedRunKeys(null), null);
});
