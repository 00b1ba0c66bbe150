/**
 * `deno task finetune`: fine-tuning of a token classifier, optionally from an MTM
 * pre-training run (`--init <run dir>`), with evaluation on the test split.
 *
 * @module
 */
import { COMMON_FLAGS, DEFAULT_CONFIGS, runFinetuneTask, taskMain } from "./_train_cli.ts";

const USAGE = `Usage: deno task finetune [options]

Classifier fine-tuning (REFERENCE.md section 5). Without --config it reads
${DEFAULT_CONFIGS.finetune}; the official recipe is configs/finetune_official.json.

${COMMON_FLAGS}
  --init <path>      initial weights: an MTM run folder, its checkpoint.json, or a
                     .safetensors file (loaded with loadFromMtm; every missing or
                     unexpected name is reported); --init=null trains from scratch
  (the test split is the config key data.test, e.g. --data.test=<file>)`;

if (import.meta.main) {
  Deno.exit(
    await taskMain(USAGE, Deno.args, async (args, stop) => {
      const s = await runFinetuneTask(args, { stop });
      const ev = s.eval;
      console.log(
        `finetune: ${s.steps} steps, final loss ${s.lastLoss.toFixed(4)}` +
          (ev
            ? `, test top-1 ${(100 * ev.top1).toFixed(2)}% top-5 ${
              (100 * ev.top5).toFixed(2)
            }% (n=${ev.n})`
            : ""),
      );
      console.log(`run folder: ${s.runDir}`);
    }),
  );
}
