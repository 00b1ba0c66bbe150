/**
 * The notebook front-end check on a small notebook made by the test: Debian's classic Notebook
 * server with the Deno kernel, a page in headless Chromium. The checks must see what is not
 * drawn. The live run through the front end is in frontend_e2e.ts (`deno task test:frontend`).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Chromium,
  inspectNotebookPage,
  JupyterServer,
  JupyterServerError,
  waitForNotebookPage,
} from "@lib/report";

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

const display = (data: Record<string, unknown>) => ({
  output_type: "display_data",
  data,
  metadata: {},
});

Deno.test("notebook front end: a figure whose script never ran, a broken image and an error output are reported as not drawn", async () => {
  const dir = await Deno.makeTempDir({ prefix: "seitpp-frontend-" });
  const server = await JupyterServer.start({ root: dir });
  const browser = await Chromium.launch();
  try {
    const spec = { data: [{ type: "scatter", x: [1, 2], y: [2, 1] }], layout: {} };
    await Deno.writeTextFile(
      join(dir, "bad.ipynb"),
      notebook([
        {
          source: "figure(...)",
          outputs: [display({
            "application/vnd.plotly.v1+json": spec,
            "text/html": '<div id="f">no script here</div>',
            "text/plain": "Figure",
          })],
        },
        {
          source: "image(...)",
          outputs: [display({ "text/html": '<img src="data:image/png;base64,AAAA">' })],
        },
        {
          source: "table(...)",
          outputs: [
            display({ "text/html": "<table><tr><td>1</td></tr><tr><td>2</td></tr></table>" }),
          ],
        },
        {
          source: "throw 1",
          outputs: [{ output_type: "error", ename: "Error", evalue: "boom", traceback: [] }],
        },
      ]),
    );
    const page = await browser.newPage();
    await page.goto(server.notebookUrl("bad.ipynb"));
    await waitForNotebookPage(page, 120_000);
    const report = await inspectNotebookPage(page);
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.outputs.map((o) => [o.cell, o.kind, o.ok]),
      [[1, "figure", false], [2, "image", false], [3, "table", true], [4, "error", false]],
    );
    assert.match(report.outputs[0].detail, /^0\/1 traces, 0 drawn/);
    assert.equal(report.outputs[1].detail, "0/1 images loaded");
  } finally {
    await browser.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("JupyterServer.start names a missing executable and the package to install", async () => {
  await assert.rejects(
    () => JupyterServer.start({ root: ".", executable: "/nonexistent/jupyter-notebook" }),
    (e: Error) =>
      e instanceof JupyterServerError &&
      e.message.startsWith('Cannot start "/nonexistent/jupyter-notebook"') &&
      e.message.includes("jupyter-notebook (deno task setup)"),
  );
});
