/**
 * Execute notebooks headless through Deno's real Jupyter kernel, or strip their outputs.
 *
 *     deno task notebooks [--budget small|full] [--out dir] [--timeout s] [--quiet s] [files...]
 *     deno task notebooks:strip [--check] [files...]
 *
 * Runs every notebooks/*.ipynb (or the given files) in a fresh kernel each, with
 * SEITPP_BUDGET set, and writes the executed copies to out/notebooks/ (the sources are never
 * written), each also as a static .html page (outputs, figures drawn by the inlined plotly.js). Fails when a cell errors, times out, or a code cell that must produce output has
 * none (mark cells that need not with a `// no-output` line); each message names the notebook
 * and the cell. `notebooks:strip` removes outputs and execution counts in place (`--check`:
 * only report notebooks that still have outputs).
 *
 * Exit codes: 0 all fine; 1 a notebook failed (or is not stripped); 2 bad usage or the runner
 * cannot start (no Python with jupyter_client, no Deno kernel).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type Budget,
  formatNotebook,
  notebookHtml,
  NotebookRunnerError,
  parseNotebook,
  runNotebooks,
  stripNotebook,
} from "@lib/report";
import { callerPath } from "./_paths.ts";

const USAGE = "usage: deno task notebooks [--budget small|full] [--out dir] [--timeout s] " +
  "[--quiet s] [files...]\n       deno task notebooks:strip [--check] [files...]";

function fail(code: number, message: string): never {
  console.error(`notebooks: ${message}`);
  Deno.exit(code);
}

async function defaultNotebooks(): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir("notebooks")) {
      if (e.isFile && e.name.endsWith(".ipynb")) files.push(`notebooks/${e.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return files.sort();
}

async function strip(files: string[], check: boolean): Promise<number> {
  let dirty = 0;
  for (const f of files) {
    const text = await Deno.readTextFile(f);
    const stripped = formatNotebook(stripNotebook(parseNotebook(text, f)));
    if (stripped === text) continue;
    dirty++;
    if (check) console.error(`notebooks: ${f} has outputs; run \`deno task notebooks:strip\``);
    else {
      await Deno.writeTextFile(f, stripped);
      console.log(`stripped ${f}`);
    }
  }
  return check && dirty > 0 ? 1 : 0;
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        budget: { type: "string", default: "full" },
        out: { type: "string", default: "out/notebooks" },
        timeout: { type: "string", default: "1800" },
        quiet: { type: "string", default: "0.3" },
        strip: { type: "boolean", default: false },
        check: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    fail(2, `${(e as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const files = positionals.length
    ? positionals.map((p) => callerPath(p))
    : await defaultNotebooks();
  if (values.strip) return await strip(files, values.check);
  if (values.budget !== "small" && values.budget !== "full") {
    fail(2, `--budget must be "small" or "full", got "${values.budget}"`);
  }
  const timeout = Number(values.timeout), quiet = Number(values.quiet);
  if (!(timeout > 0)) fail(2, `--timeout must be a positive number of seconds`);
  if (!(quiet >= 0)) fail(2, `--quiet must be a non-negative number of seconds`);
  if (files.length === 0) {
    console.log("notebooks: no notebooks to run");
    return 0;
  }
  let results;
  try {
    results = await runNotebooks(files, {
      outDir: callerPath(values.out),
      budget: values.budget as Budget,
      cellTimeoutS: timeout,
      quietS: quiet,
    });
  } catch (e) {
    if (e instanceof NotebookRunnerError || e instanceof SyntaxError) fail(2, e.message);
    throw e;
  }
  let failed = 0;
  for (const r of results) {
    const executed = parseNotebook(await Deno.readTextFile(r.out), r.out);
    const html = r.out.replace(/\.ipynb$/, "") + ".html";
    await Deno.writeTextFile(html, notebookHtml(executed, { title: r.path }));
    const cells = r.cells.filter((c) => c.status !== "skipped").length;
    const line = `${r.ok ? "ok  " : "FAIL"} ${r.path} -> ${r.out}: ${cells} code cells, ` +
      `${r.seconds.toFixed(1)} s (kernel ${r.kernelSeconds.toFixed(1)} s), ` +
      `${r.displayUpdates} display updates, ${r.lateOutputs} late outputs` +
      (r.attempts > 1
        ? `, ${r.attempts} kernels (${r.refused.length} refused as Invalid Signature)`
        : "");
    console.log(line);
    for (const p of r.problems) console.error(`  ${p.replaceAll("\n", "\n  ")}`);
    if (!r.ok) failed++;
  }
  if (failed) console.error(`notebooks: ${failed} of ${results.length} notebooks failed`);
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
