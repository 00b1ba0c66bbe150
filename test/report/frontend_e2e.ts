/**
 * A notebook run cell by cell through a real Jupyter front end (Debian's classic Notebook server,
 * the Deno kernel, headless Chromium): its figure, table and image drawn, its live progress
 * display updated in place. Run with `deno task test:frontend` (not part of `deno task test`:
 * under the full parallel suite's load the page lost kernel outputs, see the README).
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import {
  Chromium,
  JupyterServer,
  runNotebookLive,
  waitForNotebookPage,
  waitForRendered,
} from "@lib/report";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

function notebook(cells: Array<{ source: string; outputs?: unknown[] }>): string {
  return JSON.stringify({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
    cells: cells.map((c, i) => ({
      id: `c${i}`,
      cell_type: "code",
      metadata: {},
      execution_count: c.outputs?.length ? i + 1 : null,
      source: c.source,
      outputs: c.outputs ?? [],
    })),
  });
}

/** A failure of one attempt, with how many kernel messages its server refused. */
class AttemptError extends Error {
  constructor(readonly original: unknown, readonly rejected: number) {
    super((original as Error)?.message ?? String(original));
  }
}

// Debian's Notebook server now and then refuses every message of a freshly started Deno kernel
// as "Invalid Signature" (jupyter_client's HMAC check; seen twice in this project's CI-like checks, once
// on an idle machine; the rerun right after passed). That one fault, and only it, earns one more
// attempt with a new server and kernel; every other failure fails at once.
Deno.test("notebook front end: a notebook run through the page draws its figure, table and image and updates its progress in place", async () => {
  try {
    await attempt();
  } catch (e) {
    if (!(e instanceof AttemptError) || e.rejected === 0) {
      throw e instanceof AttemptError ? e.original : e;
    }
    console.warn(
      `first attempt: the notebook server refused ${e.rejected} message(s) of Deno's kernel as ` +
        `"Invalid Signature" (${e.message.split("\n")[0]}); trying once more with a new server`,
    );
    try {
      await attempt();
    } catch (e2) {
      throw e2 instanceof AttemptError ? e2.original : e2;
    }
  }
});

async function attempt(): Promise<void> {
  await Deno.mkdir(join(ROOT, "out"), { recursive: true });
  const dir = await Deno.makeTempDir({ dir: join(ROOT, "out"), prefix: "test-frontend-" });
  const server = await JupyterServer.start({ root: dir });
  const browser = await Chromium.launch();
  try {
    const nb = join(dir, "live.ipynb");
    await Deno.writeTextFile(
      nb,
      notebook([
        {
          source: 'import * as aq from "arquero";\n' +
            'import { figure, imageGrid, lineTrace, LiveProgress, tableView } from "@lib/report";\n' +
            "// no-output",
        },
        { source: "figure([lineTrace([1, 2, 3], [3, 1, 2], { name: 'a' })], { title: 't' });" },
        { source: "tableView(aq.table({ x: [1, 2, 3], y: ['a', 'b', 'c'] }));" },
        {
          source:
            "imageGrid([{ dtype: 'uint8', shape: [8, 8], data: new Uint8Array(64).fill(200) }]," +
            " { columns: 1 });",
        },
        {
          source: "const p = new LiveProgress({ total: 12, label: 'steps', throttleMs: 0 });\n" +
            "for (let s = 1; s <= 12; s++) {\n  p.update(s, { loss: 1 / s });\n" +
            "  await new Promise((r) => setTimeout(r, 150));\n}\np.finish();\nawait p.flush();",
        },
      ]),
    );
    const page = await browser.newPage();
    await page.goto(server.notebookUrl(relative(dir, nb)));
    await waitForNotebookPage(page, 120_000);
    const run = await runNotebookLive(page, { timeoutMs: 120_000 }).catch((e) => {
      throw new Error(
        `${e.message}\n${server.rejectedMessages} kernel messages refused as "Invalid ` +
          `Signature"; the notebook server's log ends:\n${server.logTail}`,
      );
    });
    const { midRunScreenshots: _, ...seen } = run;
    const why = JSON.stringify(seen);
    assert.deepEqual(run.failedCells, [], why);
    assert.deepEqual(run.kernelEvents, [], why);
    assert.deepEqual(run.droppedOutputs, [], why);
    assert.equal(server.rejectedMessages, 0, `kernel messages refused: ${server.logTail}`);
    assert.equal(run.maxCount, 1, `one element, updated in place: ${why}`);
    assert.ok(run.distinctHeadlines >= 3, `${run.distinctHeadlines} progress states: ${why}`);
    assert.match(run.snapshots.at(-1)!.headline, /^steps 12\/12 \(100%\)/);
    const report = await waitForRendered(page, 60_000);
    assert.ok(report.ok, JSON.stringify(report.outputs));
    assert.deepEqual(
      Object.fromEntries(Object.entries(report.summary).map(([k, v]) => [k, v.ok])),
      { figure: 1, table: 1, image: 1, html: 1 },
    );
  } catch (e) {
    throw new AttemptError(e, server.rejectedMessages);
  } finally {
    await browser.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
