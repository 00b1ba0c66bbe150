/**
 * `deno task tokens:inspect <NAME-token.data.bin.gz> [--index <file>] [--labels <file>]
 *  [--codebook-size K] [--grid-side n] [--classes C] [--top k] [--json]`
 *
 * Opens a token dataset in the official SeiT format, checks every record, and prints its
 * size, grid side, code range, histogram summary (distinct codes, top codes, entropy),
 * labels, and `sha256` = hex SHA-256 of all decoded codes in record order, row-major, each
 * a little-endian int32. `--classes C` checks every label is below C (the model's classes).
 * A corrupt file exits with status 1 and one line naming the
 * file and record; bad arguments exit with status 2. Relative paths are the caller's
 * (`INIT_CWD`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { openTokenDataset, summarizeTokenDataset, TokenFileError } from "@lib/tokens";
import { callerPath } from "./_paths.ts";

const USAGE =
  "usage: deno task tokens:inspect <data.bin.gz> [--index <file>] [--labels <file>|--no-labels] " +
  "[--codebook-size K] [--grid-side n] [--classes C] [--top k] [--json]";

function fail(message: string, status: number): never {
  console.error(`tokens:inspect: ${message}`);
  Deno.exit(status);
}

function intOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  if (!Number.isSafeInteger(v) || v < 1) {
    fail(`--${name} must be a positive integer, got "${value}"`, 2);
  }
  return v;
}

function percent(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}

async function main(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        index: { type: "string" },
        labels: { type: "string" },
        "no-labels": { type: "boolean" },
        "codebook-size": { type: "string" },
        "grid-side": { type: "string" },
        classes: { type: "string" },
        top: { type: "string" },
        json: { type: "boolean" },
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
  const top = intOption("top", values.top) ?? 10;
  try {
    const ds = await openTokenDataset(dataPath, {
      indexPath: callerPath(values.index),
      labelsPath: values["no-labels"] ? null : callerPath(values.labels),
      codebookSize: intOption("codebook-size", values["codebook-size"]),
      gridSide: intOption("grid-side", values["grid-side"]),
      numClasses: intOption("classes", values.classes),
    });
    const s = summarizeTokenDataset(ds, { top });
    const compressed = (await Deno.stat(dataPath)).size;
    if (values.json) {
      console.log(JSON.stringify(
        { ...s, indexPath: ds.indexPath, labelsPath: ds.labelsPath, compressedBytes: compressed },
        null,
        2,
      ));
      return;
    }
    const n = s.gridSide;
    const lines = [
      `data       ${dataPath}`,
      `index      ${ds.indexPath}`,
      `records    ${s.records} x ${n}x${n} = ${s.codes} codes; ${s.dataBytes} bytes decompressed, ${compressed} gzip`,
      `codes      ${s.minCode}..${s.maxCode}; ${s.escapedCodes} escaped (>= 255, ${
        percent(s.codes ? s.escapedCodes / s.codes : 0)
      })`,
      `histogram  ${s.distinctCodes} distinct codes, entropy ${s.entropyBits.toFixed(4)} bits` +
      (s.distinctCodes > 1 ? ` (uniform over them: ${Math.log2(s.distinctCodes).toFixed(4)})` : ""),
      `top codes  ${s.topCodes.map((t) => `${t.code} (${percent(t.share)})`).join(", ")}`,
      s.labels === null
        ? `labels     none`
        : `labels     ${ds.labelsPath}: ${s.labels.count} labels, ${s.labels.classes} classes, ${s.labels.min}..${s.labels.max}`,
      `sha256     ${s.sha256}`,
    ];
    console.log(lines.join("\n"));
  } catch (e) {
    if (
      e instanceof TokenFileError || e instanceof Deno.errors.NotFound ||
      e instanceof SyntaxError || e instanceof RangeError || e instanceof TypeError
    ) {
      fail(e.message, 1);
    }
    throw e;
  }
}

if (import.meta.main) await main(Deno.args);
