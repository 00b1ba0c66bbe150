/**
 * Run one parser on one file, for the hostile-input suite's subprocesses:
 *
 *     deno run -A test/hostile/_parse.ts <npy|idx|png|safetensors|torch|tokens> <file>
 *       [--classes C]
 *
 * Prints `ok` and exits 0 when the file parses; prints `<ErrorName>: <message>` (one line)
 * and exits 1 for a typed error; anything else keeps its stack trace (exit 1 by Deno).
 *
 * @module
 */
import { readIdxFile, readNpyFile, readPngFile, readSafetensorsFile, readTorchFile } from "@lib/io";
import { openTokenDataset } from "@lib/tokens";

const [kind, file, ...rest] = Deno.args;
const classes = rest[0] === "--classes" ? Number(rest[1]) : undefined;
try {
  switch (kind) {
    case "npy":
      await readNpyFile(file);
      break;
    case "idx":
      await readIdxFile(file);
      break;
    case "png":
      await readPngFile(file);
      break;
    case "safetensors":
      await readSafetensorsFile(file);
      break;
    case "torch":
      await readTorchFile(file);
      break;
    case "tokens":
      await openTokenDataset(file, { numClasses: classes });
      break;
    default:
      throw new Error(`unknown parser ${kind}`);
  }
  console.log("ok");
} catch (e) {
  const err = e as Error;
  if (err instanceof Error && err.constructor !== Error) {
    console.error(`${err.name}: ${err.message.split("\n")[0]}`);
    Deno.exit(1);
  }
  throw e;
}
