import assert from "node:assert/strict";
import { classifierTiny, MtmModel, mtmTiny, TokenClassifier } from "@lib/models";
import { initBackend } from "@lib/backend";
import { Rng } from "@lib/random";

// bench/torch_step.py (the PyTorch side of `deno task bench:train --vs-torch`) needs Debian's
// python3-torch at /usr/bin/python3 (SEITPP_PYTHON overrides); CI installs it.
const python = Deno.env.get("SEITPP_PYTHON") ?? "/usr/bin/python3";
const script = new URL("../../bench/torch_step.py", import.meta.url).pathname;

async function torchStep(kind: "mtm" | "cls", config: object) {
  const out = await new Deno.Command(python, {
    args: [script, "--kind", kind, "--config", JSON.stringify(config), "--batch", "4"]
      .concat(["--steps", "1", "--warmup", "1", "--threads", "1"]),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim());
}

for (const kind of ["mtm", "cls"] as const) {
  Deno.test(`bench/torch_step.py trains a ${kind} with as many parameters as ours`, async () => {
    await initBackend({ backend: "cpu" });
    const model = kind === "mtm"
      ? new MtmModel(mtmTiny(), new Rng(0))
      : new TokenClassifier(classifierTiny(), new Rng(0));
    try {
      const r = await torchStep(kind, model.config);
      assert.ok(r.ms_per_step > 0 && Number.isFinite(r.ms_per_step), JSON.stringify(r));
      assert.equal(r.threads, 1);
      assert.equal(r.trainable_parameters, model.params.count(true));
    } finally {
      model.dispose();
    }
  });
}
