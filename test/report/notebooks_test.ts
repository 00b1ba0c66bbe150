import assert from "node:assert/strict";
import {
  Chromium,
  findPython,
  formatNotebook,
  type Notebook,
  notebookBudget,
  type NotebookCell,
  notebookHtml,
  parseNotebook,
  requiresOutput,
  runNotebooks,
  stripNotebook,
} from "@lib/report";

const SMOKE = "notebooks/00_smoke.ipynb";

function code(source: string, tags?: string[]): NotebookCell {
  return {
    cell_type: "code",
    metadata: tags ? { tags } : {},
    execution_count: null,
    outputs: [],
    source,
  };
}

function notebook(cells: NotebookCell[]): Notebook {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
    cells,
  };
}

Deno.test("the committed smoke notebook is stripped of outputs", async () => {
  const text = await Deno.readTextFile(SMOKE);
  assert.equal(formatNotebook(stripNotebook(parseNotebook(text, SMOKE))), text);
});

Deno.test("output convention: code needs output unless marked // no-output or tagged", () => {
  assert.equal(requiresOutput(code("1 + 1")), true);
  assert.equal(requiresOutput(code("// no-output\nimport * as aq from 'arquero';")), false);
  assert.equal(requiresOutput(code("const x = 1;", ["no-output"])), false);
  assert.equal(requiresOutput(code("// just a comment\n\n")), false);
  assert.equal(requiresOutput({ cell_type: "markdown", source: "# hi" }), false);
});

Deno.test("notebookBudget reads SEITPP_BUDGET and refuses other values", () => {
  const old = Deno.env.get("SEITPP_BUDGET");
  try {
    Deno.env.delete("SEITPP_BUDGET");
    assert.equal(notebookBudget(), "full");
    Deno.env.set("SEITPP_BUDGET", "small");
    assert.equal(notebookBudget(), "small");
    Deno.env.set("SEITPP_BUDGET", "tiny");
    assert.throws(() => notebookBudget(), {
      name: "RangeError",
      message: 'Cannot use SEITPP_BUDGET="tiny": expected "small" or "full"',
    });
  } finally {
    if (old === undefined) Deno.env.delete("SEITPP_BUDGET");
    else Deno.env.set("SEITPP_BUDGET", old);
  }
});

Deno.test("the smoke notebook runs through the real Deno kernel with every output, and its HTML draws", async () => {
  const out = await Deno.makeTempDir();
  const before = await Deno.readTextFile(SMOKE);
  try {
    const [r] = await runNotebooks([SMOKE], { outDir: out, budget: "small", onLog: () => {} });
    assert.deepEqual(r.problems, []);
    assert.equal(r.ok, true);
    assert.equal(await Deno.readTextFile(SMOKE), before, "the source notebook is not written");
    const nb = parseNotebook(await Deno.readTextFile(r.out), r.out);
    const codeCells = nb.cells.filter((c) => c.cell_type === "code");
    assert.equal(r.cells.length, codeCells.length);
    assert.ok(r.cells.every((c) => c.status === "ok"));
    for (const c of codeCells) {
      if (requiresOutput(c)) assert.ok((c.outputs ?? []).length > 0, `outputs of ${c.id}`);
    }
    const byId = (id: string) => nb.cells.find((c) => c.id === id)!.outputs!;
    // The budget reached the kernel.
    assert.equal(byId("budget")[0].text, "budget: small, in Jupyter: true\n");
    // Figures: plotly json, html and text.
    for (const id of ["fig-line", "fig-heatmap", "fig-hist"]) {
      const data = byId(id)[0].data as Record<string, unknown>;
      assert.deepEqual(Object.keys(data).sort(), [
        "application/vnd.plotly.v1+json",
        "text/html",
        "text/plain",
      ]);
    }
    assert.ok((byId("images")[0].data as Record<string, string>)["image/png"].length > 100);
    // The live progress output was updated in place to its final state.
    assert.ok(r.displayUpdates >= 1);
    const progress = byId("progress");
    assert.equal(progress.length, 1);
    assert.equal(progress[0].output_type, "display_data");
    assert.match(
      (progress[0].data as Record<string, string>)["text/plain"],
      /^demo 40\/40 \(100%\) .*\| done$/,
    );

    // The executed notebook as HTML in headless Chromium: every figure drawn.
    const browser = await Chromium.launch();
    try {
      const page = await browser.newPage({ width: 1000, height: 800 });
      await page.setContent(notebookHtml(nb, { title: SMOKE }));
      const drawn = await page.evaluate<Record<string, number>>(`new Promise((resolve, reject) => {
        const t0 = Date.now();
        (function poll() {
          const q = (s) => document.querySelectorAll(s).length;
          const r = {
            plots: q('.js-plotly-plot .main-svg .cartesianlayer'),
            traces: q('.js-plotly-plot .scatterlayer .trace'),
            heatmaps: q('.js-plotly-plot .heatmaplayer .hm'),
            bars: q('.js-plotly-plot .barlayer .point'),
            tables: q('table'),
            images: q('img'),
            progress: q('.seitpp-progress polyline'),
          };
          if (r.plots >= 3) resolve(r);
          else if (Date.now() - t0 > 30000) reject(new Error('not drawn: ' + JSON.stringify(r)));
          else setTimeout(poll, 50);
        })();
      })`);
      assert.equal(drawn.plots, 3);
      assert.equal(drawn.traces, 2);
      assert.equal(drawn.heatmaps, 1);
      assert.ok(drawn.bars >= 10);
      assert.equal(drawn.tables, 2);
      assert.equal(drawn.images, 1);
      assert.equal(drawn.progress, 1);
    } finally {
      await browser.close();
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("deno task notebooks fails naming the notebook and cell that errors, keeps late outputs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.ipynb`;
    await Deno.writeTextFile(
      path,
      formatNotebook(notebook([
        code('console.log("fine")'),
        code("// no-output\nconst y = 2;"),
        code("const z = 3;"),
        code('setTimeout(() => console.log("late"), 150);\n1'),
        code('throw new Error("boom in cell 5")'),
        code('console.log("never")'),
      ])),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tasks/notebooks.ts", "--budget", "small", "--out", `${dir}/out`, path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 1, stderr);
    assert.match(stdout, /^FAIL .*bad\.ipynb/m);
    assert.ok(
      stderr.includes(
        `${path} cell 5 (code cell 5: "throw new Error(\\"boom in cell 5\\")") failed: ` +
          "Error: boom in cell 5",
      ),
      stderr,
    );
    assert.ok(
      stderr.includes(`${path} cell 3 (code cell 3: "const z = 3;") produced no output`),
      stderr,
    );
    assert.ok(stderr.includes(`${path}: 1 later code cells were not run`), stderr);
    assert.ok(stderr.includes("notebooks: 1 of 1 notebooks failed"), stderr);
    const nb = parseNotebook(await Deno.readTextFile(`${dir}/out/bad.ipynb`));
    // The output printed 150 ms after the cell's reply still lands in that cell.
    const late = nb.cells[3].outputs!;
    assert.deepEqual(late.map((o) => o.output_type).sort(), ["execute_result", "stream"]);
    assert.equal(late.find((o) => o.output_type === "stream")!.text, "late\n");
    assert.equal(nb.cells[4].outputs![0].output_type, "error");
    assert.deepEqual(nb.cells[5].outputs, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stripNotebook removes outputs and counts and leaves the input alone", () => {
  const nb = notebook([code("1 + 1")]);
  nb.cells[0].outputs = [{ output_type: "execute_result", data: { "text/plain": "2" } }];
  nb.cells[0].execution_count = 1;
  const s = stripNotebook(nb);
  assert.deepEqual(s.cells[0].outputs, []);
  assert.equal(s.cells[0].execution_count, null);
  assert.equal(nb.cells[0].outputs?.length, 1);
  assert.throws(() => parseNotebook('{"nbformat": 3, "cells": []}', "old.ipynb"), {
    name: "SyntaxError",
    message: 'Cannot read notebook "old.ipynb": expected nbformat 4 with a "cells" array',
  });
});

Deno.test("runNotebooks names a missing kernel and tells how to install it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.ipynb`, formatNotebook(notebook([code("1")])));
    await assert.rejects(
      () => runNotebooks([`${dir}/a.ipynb`], { outDir: `${dir}/out`, kernel: "no-such-kernel" }),
      {
        name: "NotebookRunnerError",
        message: 'no Jupyter kernel "no-such-kernel" is installed: run `deno jupyter --install`',
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A Python for runNotebooks that runs the real driver and kernel, but first alters chosen
 * messages after they were signed, as the fault does: `plan` maps a kernel (1 = the first one
 * started) to [the received message to alter, how: "content" changes a byte of the content,
 * "session" puts another process's session id in the header].
 */
async function tamperingPython(
  dir: string,
  plan: Record<number, [number, "content" | "session"]>,
): Promise<string> {
  const wrapper = `${dir}/tamper.py`;
  await Deno.writeTextFile(
    wrapper,
    `import json, os, sys
driver = sys.argv[1]
sys.path.insert(0, os.path.dirname(driver))
import _nbrun
from jupyter_client.session import Session
plan = {int(k): v for k, v in json.loads(${JSON.stringify(JSON.stringify(plan))}).items()}
state = {"kernel": 0, "received": 0}
start = _nbrun.KernelManager.start_kernel
def start_kernel(self, *a, **k):
    state["kernel"] += 1
    state["received"] = 0
    return start(self, *a, **k)
_nbrun.KernelManager.start_kernel = start_kernel
feed = Session.feed_identities
def tampered(self, msg_list, copy=True):
    idents, msg_list = feed(self, msg_list, copy=copy)
    state["received"] += 1
    which = plan.get(state["kernel"])
    if which and which[0] == state["received"]:
        frames = [bytes(f.bytes) if hasattr(f, "bytes") else bytes(f) for f in msg_list]
        if which[1] == "content":
            frames[4] = frames[4].replace(b"{", b"{ ", 1)
        else:
            header = json.loads(frames[1])
            header["session"] = "00000000-0000-4000-8000-000000000000"
            frames[1] = json.dumps(header).encode()
        msg_list = frames
    return idents, msg_list
Session.feed_identities = tampered
sys.exit(_nbrun.main())
`,
  );
  const real = await findPython();
  const python = `${dir}/python`;
  await Deno.writeTextFile(
    python,
    `#!/bin/sh\nif [ "$1" = -c ]; then exec "${real}" "$@"; fi\n` +
      `exec "${real}" ${wrapper} "$@"\n`,
  );
  await Deno.chmod(python, 0o755);
  return python;
}

Deno.test("a kernel message refused as Invalid Signature: the notebook runs again with a new kernel, once, and says so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/two.ipynb`;
    await Deno.writeTextFile(
      path,
      formatNotebook(notebook([code('console.log("one")'), code("1 + 1")])),
    );
    const options = { outDir: `${dir}/out`, budget: "small" as const, onLog: () => {} };

    // The third message of the first kernel is altered after signing: refused, never used; the
    // second kernel runs the notebook through.
    const once = await tamperingPython(dir, { 1: [3, "content"] });
    const [r] = await runNotebooks([path], { ...options, python: once });
    assert.deepEqual(r.problems, []);
    assert.equal(r.attempts, 2);
    assert.equal(r.refused.length, 1);
    assert.match(
      r.refused[0],
      /^\w+ message \S+ refused as Invalid Signature after 2 verified messages \(\d+ frames; session [\w-]+: a session this kernel used in verified messages\)$/,
    );
    const nb = parseNotebook(await Deno.readTextFile(r.out), r.out);
    assert.equal(nb.cells[0].outputs![0].text, "one\n");
    assert.equal((nb.cells[1].outputs![0].data as Record<string, string>)["text/plain"], "2");

    // Refused in both kernels (the second time a message of another session): the notebook fails,
    // naming both messages; there is no third kernel.
    const twice = await tamperingPython(dir, { 1: [3, "content"], 2: [4, "session"] });
    const [f] = await runNotebooks([path], { ...options, python: twice });
    assert.equal(f.ok, false);
    assert.equal(f.attempts, 2);
    assert.equal(f.refused.length, 2);
    assert.match(
      f.refused[1],
      /session 00000000-0000-4000-8000-000000000000: a session never seen from this kernel\)$/,
    );
    assert.equal(f.problems.length, 1);
    assert.ok(
      f.problems[0].startsWith(
        `${path}: kernel messages refused as Invalid Signature in every attempt: ${f.refused[0]}; `,
      ),
      f.problems[0],
    );

    // Without the fault: one kernel, nothing refused.
    const [clean] = await runNotebooks([path], options);
    assert.equal(clean.ok, true);
    assert.equal(clean.attempts, 1);
    assert.deepEqual(clean.refused, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
