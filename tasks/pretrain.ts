/**
 * `deno task pretrain`: masked token modeling pre-training of an MTM model on an
 * official-format token dataset. Writes a run folder (config.json, log.jsonl,
 * metrics.json, checkpoint.json + checkpoint-<step>.safetensors, model.safetensors).
 *
 * @module
 */
import { COMMON_FLAGS, DEFAULT_CONFIGS, runPretrainTask, taskMain } from "./_train_cli.ts";

const USAGE = `Usage: deno task pretrain [options]

MTM pre-training (REFERENCE.md section 4). Without --config it reads
${DEFAULT_CONFIGS.pretrain} (the embedded Fashion-MNIST tokens); the official
ViT-B recipe is configs/pretrain_official.json.

${COMMON_FLAGS}`;

if (import.meta.main) {
  Deno.exit(
    await taskMain(USAGE, Deno.args, async (args, stop) => {
      const s = await runPretrainTask(args, { stop });
      console.log(
        `pretrain: ${s.steps} steps (${
          s.stopped === "maxSteps" ? "step budget" : "all epochs"
        }), ` +
          `final loss ${s.lastLoss.toFixed(4)}, ${
            s.samplesPerSecond.toFixed(1)
          } samples/s on ${s.backend}`,
      );
      console.log(`run folder: ${s.runDir}`);
    }),
  );
}
