// Static checks of the committed topic notebooks (the headless run itself is
// `deno task notebooks --budget small`, which CI runs after `deno task ok`): stripped, on the
// Deno kernel, reading their budget, importing only through the import map, holding no
// definitions of their own, and type-correct as one TypeScript module.
import assert from "node:assert/strict";
import { cellSource, formatNotebook, parseNotebook, stripNotebook } from "@lib/report";

const TOPICS = [
  "notebooks/01_tokens.ipynb",
  "notebooks/02_augmentations.ipynb",
  "notebooks/03_pretraining.ipynb",
  "notebooks/04_ablation.ipynb",
  "notebooks/05_paper_figures.ipynb",
];

async function existing(): Promise<string[]> {
  const out: string[] = [];
  for (const p of TOPICS) {
    try {
      await Deno.stat(p);
      out.push(p);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return out;
}

function code(path: string, text: string): string[] {
  return parseNotebook(text, path).cells.filter((c) => c.cell_type === "code").map(cellSource);
}

Deno.test("topic notebooks are committed stripped, on the Deno kernel, with cell ids", async () => {
  const paths = await existing();
  assert.ok(paths.length >= 3, `expected the topic notebooks, found ${paths.join(", ")}`);
  for (const p of paths) {
    const text = await Deno.readTextFile(p);
    const nb = parseNotebook(text, p);
    assert.equal(formatNotebook(stripNotebook(nb)), text, `${p} has outputs`);
    assert.equal((nb.metadata.kernelspec as { name?: string })?.name, "deno", p);
    const ids = nb.cells.map((c) => c.id);
    assert.ok(ids.every((id) => typeof id === "string" && id !== ""), `${p}: a cell has no id`);
    assert.equal(new Set(ids).size, ids.length, `${p}: duplicate cell ids`);
    assert.equal(nb.cells[0].cell_type, "markdown", `${p} starts with prose`);
  }
});

Deno.test("topic notebooks read their budget and import only through the import map", async () => {
  for (const p of await existing()) {
    const src = code(p, await Deno.readTextFile(p)).join("\n");
    assert.match(src, /notebookBudget\(\)/, `${p} does not read SEITPP_BUDGET`);
    for (const m of src.matchAll(/from\s+"([^"]+)"/g)) {
      assert.ok(
        m[1].startsWith("@lib/") || m[1] === "arquero" || m[1] === "@tensorflow/tfjs",
        `${p} imports "${m[1]}": go through the import map (@lib/...)`,
      );
    }
  }
});

Deno.test("topic notebooks hold calls, not definitions (named functions, classes, types go to lib/)", async () => {
  for (const p of await existing()) {
    const cells = code(p, await Deno.readTextFile(p));
    cells.forEach((src, i) => {
      assert.doesNotMatch(
        src,
        /^\s*(export\s|(async\s+)?function[\s*]|class\s|interface\s|type\s+\w+\s*=|(const|let)\s+\w+\s*=\s*(async\s*)?(\([^)]*\)|\w+)\s*(:\s*[^=]+)?=>)/m,
        `${p} code cell ${i + 1} defines something: move it to lib/`,
      );
    });
  }
});

Deno.test("topic notebooks type-check as the kernel would run them (cells in order)", async () => {
  const dir = await Deno.makeTempDir({ dir: "notebooks", prefix: ".check-" });
  try {
    for (const p of await existing()) {
      // the kernel runs cells as one growing module: top-level await, declarations shared
      const cells = code(p, await Deno.readTextFile(p));
      const file = `${dir}/${p.split("/").pop()!.replace(".ipynb", ".ts")}`;
      await Deno.writeTextFile(file, cells.join("\n;\n") + "\nexport {};\n");
    }
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--quiet", dir],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.ok(out.success, `deno check of the notebooks' code failed:\n${err}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
