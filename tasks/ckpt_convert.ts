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
 * The output is written atomically and never onto the input (the same path, another
 * spelling, a symlink or a hard link to it is refused before anything is read); a failed
 * run leaves an existing output as it was. Relative paths are the caller's (`INIT_CWD`).
 *
 * Exit codes: 0 written; 2 refused (unsafe global, not a torch.save file, output onto the
 * input or into a missing folder), malformed input or bad usage, with one line on stderr,
 * and no output file; 1 for an unreadable input file (missing, a directory).
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { checkOutputPath, readTorchFile, torchToSafetensors, writeSafetensorsFile } from "@lib/io";
import { callerPath } from "./_paths.ts";

const USAGE = "usage: deno task ckpt:convert <in.ckpt|.pth> <out.safetensors> [--name <name>]";

function fail(code: number, message: string): never {
  console.error(`ckpt:convert: ${message.split("\n")[0]}`);
  Deno.exit(code);
}

/** The file a path names after every symlink, or undefined when it does not exist. */
async function identity(path: string): Promise<{ real: string; info: Deno.FileInfo } | undefined> {
  try {
    return { real: await Deno.realPath(path), info: await Deno.stat(path) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Refuse an output that is the input under any spelling, symlink or hard link. */
async function refuseSameFile(input: string, output: string): Promise<void> {
  const inp = await identity(input);
  if (inp === undefined) return; // reported when reading
  const out = await identity(output);
  let same: boolean;
  if (out !== undefined) {
    same = out.real === inp.real ||
      (out.info.ino !== null && out.info.ino === inp.info.ino && out.info.dev === inp.info.dev);
  } else {
    const dir = await identity(dirname(output));
    same = dir !== undefined && join(dir.real, basename(output)) === inp.real;
  }
  if (same) {
    fail(
      2,
      `Refusing to write "${output}": it is the input "${input}" (the checkpoint would be lost)`,
    );
  }
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
  const [input, output] = pos.map((p) => callerPath(p));
  const stem = input.replace(/^.*\//, "").replace(/\.[^.]*$/, "");
  await refuseSameFile(input, output);
  try {
    await checkOutputPath(output);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof TypeError) fail(2, e.message);
    throw e;
  }
  let value;
  try {
    value = await readTorchFile(input);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(1, `Cannot read "${input}": no such file`);
    if (e instanceof TypeError && /is a directory/.test(e.message)) fail(1, e.message);
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
  try {
    await writeSafetensorsFile(output, tensors, metadata);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof TypeError) fail(2, e.message);
    throw e;
  }
  let bytes = 0;
  for (const t of tensors.values()) bytes += t.data.byteLength;
  console.log(
    `${input} -> ${output}: ${tensors.size} tensors (${bytes} bytes), ` +
      `metadata keys [${Object.keys(metadata).join(", ")}]`,
  );
}

if (import.meta.main) await main(Deno.args);
