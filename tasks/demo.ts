/**
 * `deno task demo`: the README's main command. MTM pre-training, then fine-tuning from
 * it, of a small model on the embedded Fashion-MNIST tokens (data/), with progress;
 * prints the test accuracy and both run folders. Sized for about 10 minutes on 2 CPU
 * cores (wasm backend).
 *
 * @module
 */
import { RunStoppedError, type RunSummary, type TaskArgs } from "@lib/train";
import { DEFAULT_CONFIGS, runFinetuneTask, runPretrainTask, taskMain } from "./_train_cli.ts";

const USAGE = `Usage: deno task demo [options]

MTM pre-training (${DEFAULT_CONFIGS.pretrain}) then fine-tuning from it
(${DEFAULT_CONFIGS.finetune}) on the embedded Fashion-MNIST tokens; prints the test
accuracy and the two run folders.

Options:
  --data <file>      training data instead of the embedded set (the test split is the
                     sibling file with "train" replaced by "test" in its name)
  --backend <name>   auto | wasm | cpu | webgpu | tensorflow (default auto)
  --out <dir>        where run folders are created (default runs/)
  --workers N        data-parallel training on N CPU cores in both phases (default 1)
  --pretrain.<key>=<value>, --finetune.<key>=<value>
                     override a key of one phase, e.g. --pretrain.maxSteps=50
  --<key>=<value>    override a key of both phases, e.g. --data.limitTrain=2000
  -h, --help         this text

The single phases: deno task pretrain / deno task finetune.`;

/**
 * The demo's body: both phases with overrides routed by prefix.
 * @param args parsed arguments
 * @param stop asked after every step (SIGINT / SIGTERM): true saves a checkpoint and stops
 * @returns both run summaries
 * @throws {RunStoppedError} when `stop` turned true (no phase 2 starts after it)
 */
export async function runDemo(
  args: TaskArgs,
  stop?: () => boolean,
): Promise<{ pre: RunSummary; ft: RunSummary; minutes: number }> {
  if (args.resume !== undefined || args.init !== undefined || args.config !== undefined) {
    throw new TypeError(
      "The demo takes no --resume, --init or --config: run the phases' own tasks",
    );
  }
  const t0 = performance.now();
  const route = (phase: string) =>
    args.overrides.flatMap(([k, v]): [string, string][] => {
      if (k.startsWith(`${phase}.`)) return [[k.slice(phase.length + 1), v]];
      if (k.startsWith("pretrain.") || k.startsWith("finetune.")) return [];
      return [[k, v]];
    });
  const testOverride: [string, string][] = args.data === undefined
    ? []
    : [["data.test", args.data.replace(/train(?!.*train)/, "test")]];
  console.error("demo: phase 1 of 2, MTM pre-training");
  const pre = await runPretrainTask({ ...args, overrides: route("pretrain") }, { stop });
  if (stop?.()) {
    console.error(
      `demo: stopped after phase 1; pre-training is complete in ${pre.runDir}: ` +
        `fine-tune from it with deno task finetune --init ${pre.runDir}`,
    );
    throw new RunStoppedError(pre.steps, pre.runDir);
  }
  console.error("demo: phase 2 of 2, fine-tuning from the pre-trained encoder");
  const ft = await runFinetuneTask({
    ...args,
    init: pre.runDir,
    overrides: [...testOverride, ...route("finetune")],
  }, { stop });
  const minutes = (performance.now() - t0) / 60000;
  return { pre, ft, minutes };
}

if (import.meta.main) {
  Deno.exit(
    await taskMain(USAGE, Deno.args, async (args, stop) => {
      const { pre, ft, minutes } = await runDemo(args, stop);
      const ev = ft.eval;
      console.log(
        `\ndemo done in ${minutes.toFixed(1)} min on ${ft.backend}\n` +
          `  pre-training: ${pre.steps} steps, final MTM loss ${pre.lastLoss.toFixed(4)}\n` +
          `    run folder: ${pre.runDir}\n` +
          `  fine-tuning:  ${ft.steps} steps, final loss ${ft.lastLoss.toFixed(4)}\n` +
          (ev
            ? `    test accuracy: top-1 ${(100 * ev.top1).toFixed(2)}%, top-5 ${
              (100 * ev.top5).toFixed(2)
            }% (${ev.n} images)\n`
            : "") +
          `    run folder: ${ft.runDir}`,
      );
    }),
  );
}
