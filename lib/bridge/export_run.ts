/**
 * Write what the authors' scripts need to continue or repeat one of our runs on many GPUs:
 * `command.sh` (the `torchrun` launch line of {@linkcode authorsCommand}, with the
 * warnings as comments), the run's weights as `model.pth` (`{"model": state_dict}`, their
 * `--resume` / `--finetune` input), a fine-tuning run's initial weights as `pretrained.pth`,
 * the codebook as `codebook.ckpt` (a bare `[K, d]` tensor, as the release ships it) and the
 * TokenAdapt weights as `tokenadapt.ckpt` (a state dict of `conversion_function.*` and
 * `reverse_transform.*`), all `torch.save` files that `torch.load(..., weights_only=True)`
 * reads; and `authors_args.json` (the mapped arguments and warnings).
 *
 * @module
 */
import { dirname, join } from "node:path";
import {
  flattenTensors,
  type HostTensor,
  PyDict,
  readSafetensorsFile,
  readTorchFile,
  stateDictOf,
  writeFileAtomic,
  writeTorch,
} from "../io/mod.ts";
import { loadCodebook } from "../tokens/mod.ts";
import { readModelWeights } from "../train/mod.ts";
import {
  type AuthorsCommand,
  authorsCommand,
  type AuthorsCommandOptions,
  type BridgeRunConfig,
  commandLine,
  runStepOf,
} from "./authors_args.ts";

/** Options of {@linkcode exportForAuthors}. */
export interface AuthorsExportOptions extends AuthorsCommandOptions {
  /** The folder to write (created). */
  out: string;
  /** The run's weights (reference names), written as `model.pth`; null for none. */
  weights?: Map<string, HostTensor> | null;
  /** Where the config came from, for the command's header. */
  source?: string;
}

/** What {@linkcode exportForAuthors} wrote. */
export interface AuthorsExportResult {
  /** The command. */
  command: AuthorsCommand;
  /** Files written, relative to `out`. */
  files: string[];
}

async function readTensors(path: string): Promise<Map<string, HostTensor>> {
  if (/\.safetensors$/i.test(path)) return (await readSafetensorsFile(path)).tensors;
  return flattenTensors(await readTorchFile(path)).tensors;
}

const modelFile = (tensors: Map<string, HostTensor>) =>
  writeTorch(new PyDict("dict", [["model", stateDictOf(tensors)]]), { archiveName: "archive" });

/**
 * Export a resolved run config (and its weights) for the authors' scripts.
 *
 * @param config the resolved config (a run folder's `config.json`, or a task's resolved config)
 * @param options output folder, weights, GPUs, per-GPU batch, data folder on the cluster
 * @returns the command and the files written
 * @throws {UnmappableSettingError} for a setting without a counterpart (nothing is written)
 * @throws {Deno.errors.NotFound} for a missing codebook, TokenAdapt or init file (key named)
 * @throws {TypeError} for TokenAdapt weights with names that are not TokenAdapt's
 */
export async function exportForAuthors(
  config: BridgeRunConfig,
  options: AuthorsExportOptions,
): Promise<AuthorsExportResult> {
  const command = authorsCommand(config, options);
  const out = options.out;
  const files: string[] = [];
  const written = new Map<string, Uint8Array>();
  const data = config.data as { train: string };

  // every input is read before anything is written
  const codebookPath = typeof config.codebook === "string"
    ? config.codebook
    : join(dirname(data.train), "codebook.safetensors");
  const need = async <T>(key: string, path: string, read: () => Promise<T>): Promise<T> => {
    try {
      return await read();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Deno.errors.NotFound(`Config key "${key}": "${path}" does not exist`);
      }
      throw e;
    }
  };
  const codebook = await need("codebook", codebookPath, () => loadCodebook(codebookPath));
  written.set(command.args.codebook_path as string, writeTorch(codebook));
  const step = runStepOf(config);
  if (step?.tokenAdapt) {
    const path = config.tokenAdaptWeights as string;
    const ta = await need("tokenAdaptWeights", path, () => readTensors(path));
    for (const k of ta.keys()) {
      if (!k.startsWith("conversion_function.") && !k.startsWith("reverse_transform.")) {
        throw new TypeError(
          `Config key "tokenAdaptWeights": "${path}" holds "${k}", not a TokenAdapt weight ` +
            `(conversion_function.* / reverse_transform.*)`,
        );
      }
    }
    written.set(command.args.tokenadapt_path as string, writeTorch(stateDictOf(ta)));
  }
  if (typeof command.args.finetune === "string") {
    const init = config.init as string;
    const { tensors } = await readModelWeights(init);
    written.set(command.args.finetune, modelFile(tensors));
  }
  if (options.weights) written.set("model.pth", modelFile(options.weights));

  await Deno.mkdir(out, { recursive: true });
  for (const [name, bytes] of written) {
    if (name.includes("/")) {
      throw new TypeError(`Cannot write "${name}" into "${out}": file names only`);
    }
    await writeFileAtomic(join(out, name), bytes);
    files.push(name);
  }
  const c = command.args;
  const effective = (c.batch_size as number) * (c.accum_iter as number) * command.gpus *
    command.nodes;
  const header = [
    "#!/bin/sh",
    `# ${command.script} of naver-ai/seit (SeiT++) for ${options.source ?? "a seitpp run"}:`,
    `# effective batch ${c.batch_size} per GPU x accum ${c.accum_iter} x ${
      command.gpus * command.nodes
    } GPUs = ${effective}.`,
    "# Run it in a checkout of the authors' repository, with the token files where the paths say",
    "# and the .ckpt/.pth files of this folder next to it (or edit the paths).",
    ...(options.weights
      ? ["# model.pth holds this run's weights: add --resume model.pth to start from them."]
      : []),
    ...command.warnings.map((w) => `# not passed: ${w}`),
    "set -e",
  ];
  await writeFileAtomic(
    join(out, "command.sh"),
    new TextEncoder().encode(`${header.join("\n")}\n${commandLine(command)}\n`),
  );
  await Deno.chmod(join(out, "command.sh"), 0o755);
  files.push("command.sh");
  await writeFileAtomic(
    join(out, "authors_args.json"),
    new TextEncoder().encode(
      JSON.stringify(
        {
          script: command.script,
          gpus: command.gpus,
          nodes: command.nodes,
          args: command.args,
          argv: command.argv,
          warnings: command.warnings,
          source: options.source ?? null,
        },
        null,
        2,
      ) + "\n",
    ),
  );
  files.push("authors_args.json");
  return { command, files: files.sort() };
}
