/**
 * The notebooks in a real Jupyter front end: Debian's classic Notebook server on 127.0.0.1 with
 * the Deno kernel, each page opened in headless Chromium.
 *
 *     deno task notebooks:frontend [--budget small|full] [--executed out/notebooks]
 *       [--out out/frontend] [--live notebooks/03_pretraining.ipynb] [--timeout s]
 *
 * 1. Every executed notebook in --executed (written by `deno task notebooks`) is copied to
 *    OUT/executed, trusted (`jupyter trust`, as a user would after running it), opened, and every
 *    output of every code cell checked against the page: each Plotly figure drawn (a `.main-svg`
 *    with the spec's traces), each table with rows, each image loaded, no error output.
 *    Screenshot: OUT/NAME.png.
 * 2. The --live notebook (a stripped copy in OUT/live/notebooks, beside links to data/ and
 *    results/ so its relative paths hold) is run cell by cell through the front end with
 *    SEITPP_BUDGET set; the live progress display must update in place (one element, its text
 *    changing more than once). Screenshots: OUT/live-running-1.png and -2.png (two moments of
 *    the progress display), OUT/live-done.png.
 *
 * Writes OUT/report.json. Exit codes: 0 all fine; 1 a check failed; 2 bad usage, nothing
 * executed to check, or the server or browser cannot start.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { basename, join, relative, resolve } from "node:path";
import {
  Chromium,
  ChromiumError,
  formatNotebook,
  JupyterServer,
  JupyterServerError,
  type LiveRunReport,
  notebookScreenshot,
  parseNotebook,
  type RenderReport,
  runNotebookLive,
  stripNotebook,
  waitForNotebookPage,
  waitForRendered,
} from "@lib/report";

const USAGE = "usage: deno task notebooks:frontend [--budget small|full] [--executed dir] " +
  "[--out dir] [--live notebook] [--timeout s]";

/** A live run that did not finish (its message says where it stopped). */
class LiveRunError extends Error {
  /** @param message What did not finish, with the server's log. */
  constructor(message: string) {
    super(message);
    this.name = "LiveRunError";
  }
}

function fail(code: number, message: string): never {
  console.error(`notebooks:frontend: ${message}`);
  Deno.exit(code);
}

async function listExecuted(dir: string): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".ipynb")) files.push(join(dir, e.name));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return files.sort();
}

async function trust(files: string[]): Promise<void> {
  // `jupyter trust` (nbformat's TrustNotebookApp; Debian ships no jupyter-trust script)
  const r = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", "from nbformat.sign import TrustNotebookApp as A; A.launch_instance()", ...files],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { PYDEVD_DISABLE_FILE_VALIDATION: "1" },
  }).output();
  if (!r.success) {
    throw new JupyterServerError(`jupyter trust failed: ${new TextDecoder().decode(r.stderr)}`);
  }
}

function describe(report: RenderReport): string {
  return Object.entries(report.summary).map(([k, v]) => `${v.ok}/${v.total} ${k}`).join(", ");
}

/** Links data/ and results/ beside the live copy so "../data" from its folder resolves. */
async function prepareLive(source: string, liveRoot: string): Promise<string> {
  const nbDir = join(liveRoot, "notebooks");
  await Deno.remove(liveRoot, { recursive: true }).catch(() => {});
  await Deno.mkdir(nbDir, { recursive: true });
  await Deno.mkdir(join(liveRoot, "runs"));
  const repo = resolve(".");
  for (const d of ["data", "results"]) {
    await Deno.symlink(relative(liveRoot, join(repo, d)), join(liveRoot, d));
  }
  const copy = join(nbDir, basename(source));
  const nb = parseNotebook(await Deno.readTextFile(source), source);
  await Deno.writeTextFile(copy, formatNotebook(stripNotebook(nb)));
  return copy;
}

function retryWarning(rejected: number, why: string): void {
  console.warn(
    `the notebook server refused ${rejected} message(s) of Deno's kernel as "Invalid ` +
      `Signature" (${why.split("\n")[0]}); running the live notebook once more with a new kernel`,
  );
}

async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        budget: { type: "string", default: "small" },
        executed: { type: "string", default: "out/notebooks" },
        out: { type: "string", default: "out/frontend" },
        live: { type: "string", default: "notebooks/03_pretraining.ipynb" },
        timeout: { type: "string", default: "900" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    fail(2, `${(e as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.budget !== "small" && values.budget !== "full") {
    fail(2, `--budget must be "small" or "full", got "${values.budget}"`);
  }
  const timeoutS = Number(values.timeout);
  if (!(timeoutS > 0)) fail(2, `--timeout must be a positive number of seconds`);
  const executed = await listExecuted(values.executed);
  if (executed.length === 0) {
    fail(2, `no executed notebooks in "${values.executed}": run \`deno task notebooks\` first`);
  }
  try {
    await Deno.stat(values.live);
  } catch {
    fail(2, `cannot read the --live notebook "${values.live}"`);
  }
  const out = values.out;
  await Deno.mkdir(out, { recursive: true });
  for await (const e of Deno.readDir(out)) {
    if (e.isFile && (e.name.endsWith(".png") || e.name === "report.json")) {
      await Deno.remove(join(out, e.name));
    }
  }
  const copies = join(out, "executed");
  await Deno.remove(copies, { recursive: true }).catch(() => {});
  await Deno.mkdir(copies, { recursive: true });
  const opened: string[] = [];
  for (const f of executed) {
    const dst = join(copies, basename(f));
    await Deno.copyFile(f, dst);
    opened.push(dst);
  }
  const live = await prepareLive(values.live, join(out, "live"));
  const repo = resolve(".");

  let server: JupyterServer | undefined;
  let browser: Chromium | undefined;
  const results: Array<{ notebook: string; screenshot: string; report: RenderReport }> = [];
  let liveResult: (Omit<LiveRunReport, "midRunScreenshots"> & { render: RenderReport }) | undefined;
  let failed = 0;
  let startError: string | undefined;
  try {
    await trust(opened);
    server = await JupyterServer.start({ root: repo, env: { SEITPP_BUDGET: values.budget } });
    browser = await Chromium.launch({ timeoutMs: 120_000 });
    console.log(`notebooks:frontend: notebook server ${server.url}, ${opened.length} notebooks`);
    for (const nbPath of opened) {
      const page = await browser.newPage({ width: 1200, height: 900 });
      try {
        await page.goto(server.notebookUrl(relative(repo, resolve(nbPath))));
        await waitForNotebookPage(page, 120_000);
        const report = await waitForRendered(page, 120_000);
        const shot = join(out, basename(nbPath).replace(/\.ipynb$/, ".png"));
        await Deno.writeFile(shot, await notebookScreenshot(page));
        results.push({ notebook: nbPath, screenshot: shot, report });
        const ok = report.ok && report.trusted;
        if (!ok) failed++;
        console.log(`${ok ? "ok  " : "FAIL"} ${nbPath}: ${describe(report)} -> ${shot}`);
        if (!report.trusted) console.error(`  the page says the notebook is not trusted`);
        for (const o of report.outputs.filter((o) => !o.ok)) {
          console.error(`  cell ${o.cell} output ${o.output}: ${o.kind} not drawn (${o.detail})`);
        }
      } finally {
        await page.close().catch(() => {});
        await server.shutdownSessions().catch(() => {});
      }
    }

    // Debian's Notebook server now and then refuses every message of a freshly started Deno
    // kernel as "Invalid Signature" (jupyter_client's HMAC check); that fault, and only it, gets
    // one more attempt with a new kernel session.
    for (let attempt = 1, retry = true; retry; attempt++) {
      retry = false;
      const before = server.rejectedMessages;
      const rejected = () => server!.rejectedMessages - before;
      if (attempt > 1) await server.shutdownSessions().catch(() => {});
      const page = await browser.newPage({ width: 1200, height: 900 });
      try {
        await page.goto(server.notebookUrl(relative(repo, resolve(live))));
        await waitForNotebookPage(page, 120_000);
        let run: LiveRunReport;
        try {
          run = await runNotebookLive(page, { timeoutMs: timeoutS * 1000 });
        } catch (e) {
          if (attempt === 1 && rejected() > 0) {
            retryWarning(rejected(), (e as Error).message);
            retry = true;
            continue;
          }
          // reported here, then the browser and server are closed by the finally blocks
          throw new LiveRunError(
            `${live}: ${(e as Error).message}\nthe notebook server refused ` +
              `${rejected()} kernel message(s) as "Invalid Signature"; its log ends:\n` +
              server.logTail,
          );
        }
        for (const [i, png] of run.midRunScreenshots.entries()) {
          await Deno.writeFile(join(out, `live-running-${i + 1}.png`), png);
        }
        const render = await waitForRendered(page, 120_000);
        await Deno.writeFile(join(out, "live-done.png"), await notebookScreenshot(page));
        const { midRunScreenshots: _, ...rest } = run;
        liveResult = { ...rest, render };
        const inPlace = run.maxCount === 1 && run.distinctHeadlines >= 3;
        const ok = inPlace && run.failedCells.length === 0 && run.kernelEvents.length === 0 &&
          run.droppedOutputs.length === 0 && rejected() === 0 && render.ok;
        if (!ok && attempt === 1 && rejected() > 0) {
          retryWarning(rejected(), "outputs missing");
          retry = true;
          continue;
        }
        if (!ok) failed++;
        console.log(
          `${ok ? "ok  " : "FAIL"} ${live} run through the front end in ${
            run.seconds.toFixed(1)
          } s: ` +
            `progress display seen in ${run.distinctHeadlines} states, at most ${run.maxCount} ` +
            `element(s); ${describe(render)}`,
        );
        if (run.snapshots.length) {
          const first = run.snapshots[0], last = run.snapshots[run.snapshots.length - 1];
          console.log(`  first: ${first.headline}\n  last:  ${last.headline}`);
        }
        if (!inPlace) {
          console.error(
            `  the progress display did not update in place (need one element, >= 3 states)`,
          );
        }
        for (const c of run.failedCells) console.error(`  ${c} did not finish cleanly`);
        for (const e of run.kernelEvents) console.error(`  kernel event: ${e}`);
        if (run.droppedOutputs.length) {
          console.error(
            `  the front end dropped ${run.droppedOutputs.length} output(s) that arrived after ` +
              `their cell had finished: ${run.droppedOutputs.join(", ")}`,
          );
        }
        if (rejected()) {
          console.error(
            `  the notebook server refused ${rejected()} message(s) of Deno's kernel ` +
              `as "Invalid Signature": they never reached the page`,
          );
        }
        if (!ok) console.error(`  the notebook server's log ends:\n${server.logTail}`);
        for (const o of render.outputs.filter((o) => !o.ok)) {
          console.error(`  cell ${o.cell} output ${o.output}: ${o.kind} not drawn (${o.detail})`);
        }
      } finally {
        await page.close().catch(() => {});
      }
    }
  } catch (e) {
    if (e instanceof LiveRunError) {
      console.error(`FAIL ${e.message}`);
      failed++;
    } else if (e instanceof JupyterServerError || e instanceof ChromiumError) {
      startError = e.message;
    } else throw e;
  } finally {
    await browser?.close();
    await server?.stop();
    await Deno.writeTextFile(
      join(out, "report.json"),
      JSON.stringify({ budget: values.budget, notebooks: results, live: liveResult }, null, 1) +
        "\n",
    );
  }
  if (startError !== undefined) fail(2, startError);
  if (failed) console.error(`notebooks:frontend: ${failed} check(s) failed`);
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
