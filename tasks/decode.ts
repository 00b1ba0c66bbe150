/**
 * `deno task decode <NAME-token.data.bin.gz> [--decoder <dir>] [--count N | --indices 3,5,8]
 *  [--columns C] [--padding P] [--scale S] [--out grid.png] [--psnr-against <images>]
 *  [--backend wasm]`
 *
 * Decodes token records back to pixels with a tokenizer's decoder (by default the one in
 * the data file's folder: `tokenizer.json` + `decoder.safetensors`) and writes them as one
 * PNG grid (`renderTokenGrid` of `@lib/tokenizer`, the same bytes a notebook gets).
 * With `--psnr-against <idx file or PNG folder>` it also decodes every record and prints
 * the reconstruction PSNR against those original images.
 *
 * Exit status 1 for unreadable input (one line naming the file/record), 2 for bad arguments
 * (an output folder that does not exist, an output path that is a folder). Relative paths
 * are the caller's (`INIT_CWD`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { checkOutputPath, writeFileAtomic } from "@lib/io";
import { openTokenDataset, TokenFileError } from "@lib/tokens";
import { loadDecoder, loadImages, reconstructionMetrics, renderTokenGrid } from "@lib/tokenizer";
import { callerPath } from "./_paths.ts";

const USAGE = "usage: deno task decode <NAME-token.data.bin.gz> [--decoder <dir>] " +
  "[--count N | --indices i,j,k] [--columns C] [--padding P] [--scale S] [--out <png>] " +
  "[--psnr-against <idx file | png folder>] [--backend wasm|cpu|webgpu|auto]";

function fail(message: string, status: number): never {
  console.error(`decode: ${message}`);
  Deno.exit(status);
}

function intOption(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  if (!Number.isSafeInteger(v) || v < min) {
    fail(`--${name} must be an integer >= ${min}, got "${value}"\n${USAGE}`, 2);
  }
  return v;
}

async function main(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        decoder: { type: "string" },
        count: { type: "string" },
        indices: { type: "string" },
        columns: { type: "string" },
        padding: { type: "string" },
        scale: { type: "string" },
        out: { type: "string" },
        "psnr-against": { type: "string" },
        backend: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`, 2);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (positionals.length !== 1) {
    fail(`expected one data file, got ${positionals.length}\n${USAGE}`, 2);
  }
  const dataPath = callerPath(positionals[0]);
  const dir = dataPath.includes("/") ? dataPath.slice(0, dataPath.lastIndexOf("/")) : ".";
  const decoderDir = callerPath(values.decoder) ?? dir;
  let indices: number[] | undefined;
  if (values.indices !== undefined) {
    indices = values.indices.split(",").map((s) => {
      const v = Number(s.trim());
      if (!Number.isSafeInteger(v) || v < 0) fail(`--indices: "${s}" is not a record index`, 2);
      return v;
    });
  }
  const count = intOption("count", values.count);
  const columns = intOption("columns", values.columns);
  const padding = intOption("padding", values.padding, 0);
  const scale = intOption("scale", values.scale) ?? 2;
  const out = callerPath(values.out) ??
    dataPath.replace(/(-token)?\.data\.bin(\.gz)?$/, "") + "-grid.png";
  // a missing output folder or an output that is a folder is found before any work
  await checkOutputPath(out).catch((e) => {
    if (e instanceof Deno.errors.NotFound || e instanceof TypeError) fail(e.message, 2);
    throw e;
  });
  const info = await initBackend({ backend: (values.backend ?? "wasm") as BackendRequest });
  console.error(describeBackend(info));
  const decoder = await loadDecoder(decoderDir).catch((e) => {
    if (e instanceof Deno.errors.NotFound || e instanceof SyntaxError || e instanceof TypeError) {
      fail(e.message, 1);
    }
    throw e;
  });
  try {
    const ds = await openTokenDataset(dataPath, { codebookSize: decoder.codebookSize });
    const grid = renderTokenGrid(decoder, ds, { indices, count, columns, padding, scale });
    await writeFileAtomic(out, grid.png);
    console.log(
      `wrote ${out}: ${grid.indices.length} records of ${ds.length} ` +
        `(${grid.image.shape[1]}x${grid.image.shape[0]} px, ${grid.png.length} bytes)` +
        (ds.labels !== null
          ? `; labels ${Array.from(grid.indices.subarray(0, 16), (i) => ds.labels![i]).join(",")}${
            grid.indices.length > 16 ? ",..." : ""
          }`
          : ""),
    );
    if (values["psnr-against"] !== undefined) {
      const src = callerPath(values["psnr-against"]);
      const originals = await loadImages(src);
      if (originals.images.shape[0] !== ds.length) {
        fail(
          `Cannot compare "${dataPath}" (${ds.length} records) with "${src}" ` +
            `(${originals.images.shape[0]} images): counts differ`,
          1,
        );
      }
      const all = new Int32Array(ds.length);
      for (let i = 0; i < all.length; i++) all[i] = i;
      const m = reconstructionMetrics(decoder, ds.readBatch(all), originals.images, {
        source: src,
      });
      console.log(
        `reconstruction of ${m.count} records against ${src}: PSNR ${m.psnr.toFixed(2)} dB ` +
          `(mean per image ${m.meanImagePsnr.toFixed(2)} dB), MSE ${m.mse.toFixed(6)}`,
      );
    }
  } catch (e) {
    if (
      e instanceof TokenFileError || e instanceof Deno.errors.NotFound ||
      e instanceof SyntaxError || e instanceof RangeError || e instanceof TypeError
    ) {
      fail((e as Error).message, 1);
    }
    throw e;
  } finally {
    decoder.dispose();
  }
}

if (import.meta.main) await main(Deno.args);
