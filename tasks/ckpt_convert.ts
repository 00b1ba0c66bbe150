/**
 * Convert a PyTorch checkpoint (`torch.save`, zip or legacy format) to safetensors, safely
 * (no pickle code runs; see lib/io/torch.ts for the allow-list).
 *
 *     deno task ckpt:convert <in.ckpt|.pth> <out.safetensors> [--name <bare-tensor-name>]
 *
 * Every tensor keeps its dtype and shape; names join dict keys and list indices with "."
 * (`model.blocks.0.attn.qkv.weight`, `optimizer.state.0.exp_avg`). A bare saved tensor is
 * named after the input file (`codebook.ckpt` -> `codebook`) unless `--name` is given.
 * The non-tensor values go to `__metadata__` as JSON strings, one key per top-level dict
 * entry (`epoch`, `scaler`, `args`, ...), or one key `value` for a non-dict checkpoint.
 *
 * Exit codes: 0 written; 2 refused (unsafe global), malformed input or bad usage, with one
 * line on stderr, and no output file; 1 for an unreadable input file.
 *
 * @module
 */
import { readTorchFile, torchToSafetensors, writeSafetensorsFile } from "@lib/io";

const USAGE = "usage: deno task ckpt:convert <in.ckpt|.pth> <out.safetensors> [--name <name>]";

function fail(code: number, message: string): never {
  console.error(`ckpt:convert: ${message.split("\n")[0]}`);
  Deno.exit(code);
}

async function main(args: string[]): Promise<void> {
  const pos: string[] = [];
  let name: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--name") {
      name = args[++i];
      if (name === undefined) fail(2, USAGE);
    } else if (args[i].startsWith("-")) fail(2, `unknown option ${args[i]}; ${USAGE}`);
    else pos.push(args[i]);
  }
  if (pos.length !== 2) fail(2, USAGE);
  const [input, output] = pos;
  const stem = input.replace(/^.*\//, "").replace(/\.[^.]*$/, "");
  let value;
  try {
    value = await readTorchFile(input);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(1, `Cannot read "${input}": no such file`);
    if (e instanceof Error && e.name !== "Error") fail(2, e.message); // typed: refused/malformed
    throw e;
  }
  let converted;
  try {
    converted = torchToSafetensors(value, { rootName: name ?? stem });
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) fail(2, `"${input}": ${e.message}`);
    throw e;
  }
  const { tensors, metadata } = converted;
  await writeSafetensorsFile(output, tensors, metadata);
  let bytes = 0;
  for (const t of tensors.values()) bytes += t.data.byteLength;
  console.log(
    `${input} -> ${output}: ${tensors.size} tensors (${bytes} bytes), ` +
      `metadata keys [${Object.keys(metadata).join(", ")}]`,
  );
}

if (import.meta.main) await main(Deno.args);
