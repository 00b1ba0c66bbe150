/**
 * Headless notebook execution through Deno's real Jupyter kernel (driven by Debian's
 * jupyter_client, see `_nbrun.py`), the output convention checks, and stripping outputs.
 *
 * Convention: every code cell that has code must produce at least one output (stream,
 * display or result), unless it has a line `// no-output` or the cell tag "no-output".
 * A cell that errors, times out or kills the kernel fails the notebook; later cells are skipped.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The budget notebooks read from SEITPP_BUDGET: "small" in CI, "full" by default. */
export type Budget = "small" | "full";

/** The environment variable that carries the {@linkcode Budget} into notebooks. */
export const BUDGET_ENV = "SEITPP_BUDGET";

/**
 * The budget a notebook should use, from SEITPP_BUDGET.
 *
 * @returns "small" or "full" (the default when unset).
 * @throws RangeError when SEITPP_BUDGET holds another value.
 * @example
 * ```ts
 * import { notebookBudget } from "@lib/report";
 * const steps = notebookBudget() === "small" ? 20 : 2000;
 * ```
 */
export function notebookBudget(): Budget {
  let v: string | undefined;
  try {
    v = Deno.env.get(BUDGET_ENV);
  } catch {
    v = undefined; // no env permission: the default
  }
  if (v === undefined || v === "") return "full";
  if (v !== "small" && v !== "full") {
    throw new RangeError(`Cannot use ${BUDGET_ENV}="${v}": expected "small" or "full"`);
  }
  return v;
}

/** One cell of an nbformat 4 notebook (the fields used here). */
export interface NotebookCell {
  /** "code", "markdown" or "raw". */
  cell_type: string;
  /** Source text, as one string or a list of lines. */
  source: string | string[];
  /** Cell metadata (tags live in `metadata.tags`). */
  metadata?: { tags?: string[]; [key: string]: unknown };
  /** Outputs (code cells). */
  outputs?: Array<Record<string, unknown>>;
  /** Execution count (code cells). */
  execution_count?: number | null;
  /** Cell id (nbformat 4.5). */
  id?: string;
  [key: string]: unknown;
}

/** An nbformat 4 notebook (the fields used here). */
export interface Notebook {
  /** Always 4. */
  nbformat: number;
  /** Minor version. */
  nbformat_minor: number;
  /** Notebook metadata (kernelspec, language_info). */
  metadata: Record<string, unknown>;
  /** The cells. */
  cells: NotebookCell[];
}

/**
 * Parses notebook JSON.
 *
 * @param text The .ipynb contents.
 * @param source File name for messages.
 * @returns The notebook.
 * @throws SyntaxError naming the file when it is not JSON or not nbformat 4 with a cells array.
 */
export function parseNotebook(text: string, source = "<notebook>"): Notebook {
  let nb: unknown;
  try {
    nb = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot parse notebook "${source}": ${(e as Error).message}`);
  }
  const n = nb as Partial<Notebook> | null;
  if (!n || typeof n !== "object" || n.nbformat !== 4 || !Array.isArray(n.cells)) {
    throw new SyntaxError(
      `Cannot read notebook "${source}": expected nbformat 4 with a "cells" array`,
    );
  }
  return n as Notebook;
}

/**
 * The source of a cell as one string.
 *
 * @param cell A notebook cell.
 * @returns The joined source.
 */
export function cellSource(cell: NotebookCell): string {
  return Array.isArray(cell.source) ? cell.source.join("") : cell.source ?? "";
}

/**
 * Whether a code cell must produce output under the convention (it has code and is not marked
 * with a `// no-output` line or the "no-output" tag).
 *
 * @param cell A notebook cell.
 * @returns true when the runner requires at least one output.
 */
export function requiresOutput(cell: NotebookCell): boolean {
  if (cell.cell_type !== "code") return false;
  if (cell.metadata?.tags?.includes("no-output")) return false;
  const lines = cellSource(cell).split("\n").map((l) => l.trim());
  if (lines.some((l) => l === "// no-output")) return false;
  return lines.some((l) => l !== "" && !l.startsWith("//"));
}

/**
 * A copy of a notebook without outputs and execution counts (what is committed).
 *
 * @param nb A notebook.
 * @returns A new notebook; the input is not changed.
 */
export function stripNotebook(nb: Notebook): Notebook {
  const copy = structuredClone(nb);
  for (const cell of copy.cells) {
    if (cell.cell_type === "code") {
      cell.outputs = [];
      cell.execution_count = null;
    }
    if (cell.metadata) {
      delete cell.metadata.execution;
      delete cell.metadata.collapsed;
      delete cell.metadata.scrolled;
    }
  }
  return copy;
}

/**
 * Serialises a notebook the way Jupyter does (1-space indent, trailing newline).
 *
 * @param nb A notebook.
 * @returns JSON text.
 */
export function formatNotebook(nb: Notebook): string {
  return JSON.stringify(nb, null, 1) + "\n";
}

/** The outcome of one code cell. */
export interface CellResult {
  /** Index among all cells (0-based). */
  index: number;
  /** How the cell ended. */
  status: "ok" | "error" | "timeout" | "died" | "skipped";
  /** Wall time in seconds. */
  seconds: number;
  /** Number of outputs in the executed copy. */
  outputs: number;
}

/** The outcome of one notebook. */
export interface NotebookResult {
  /** The source notebook. */
  path: string;
  /** The executed copy. */
  out: string;
  /** true when no problem was found. */
  ok: boolean;
  /** One message per problem, each naming the notebook and the cell. */
  problems: string[];
  /** Code cells. */
  cells: CellResult[];
  /** Seconds for the whole notebook, kernel start included. */
  seconds: number;
  /** Seconds until the kernel was ready. */
  kernelSeconds: number;
  /** update_display_data messages seen (live displays). */
  displayUpdates: number;
  /** Outputs that arrived after their cell was considered done (routed back to it). */
  lateOutputs: number;
  /**
   * Kernels started for this notebook: 2 when a kernel message was refused as "Invalid
   * Signature" (its HMAC did not match) and the notebook was run again from the start.
   */
  attempts: number;
  /** The refused messages, one line each (type, id, and whose session it carried). */
  refused: string[];
}

/** Options for {@linkcode runNotebooks}. */
export interface RunNotebooksOptions {
  /** Folder for the executed copies. @default "out/notebooks" */
  outDir?: string;
  /** Sets SEITPP_BUDGET in the kernel. @default "full" */
  budget?: Budget;
  /** Seconds a cell may run before it is interrupted and the notebook fails. @default 1800 */
  cellTimeoutS?: number;
  /** Seconds iopub must stay quiet after a cell's reply and idle. @default 0.3 */
  quietS?: number;
  /** Seconds to wait for the kernel to start. @default 60 */
  startupTimeoutS?: number;
  /** Jupyter kernel name. @default "deno" */
  kernel?: string;
  /** Python with jupyter_client. @default $SEITPP_PYTHON, python3 or /usr/bin/python3 */
  python?: string;
  /** Extra environment for the kernel. */
  env?: Record<string, string>;
  /** Receives the driver's progress lines. @default written to stderr */
  onLog?: (line: string) => void;
}

/** Thrown when the driver cannot run at all (no Python with jupyter_client, no kernel). */
export class NotebookRunnerError extends Error {
  /** @param message What is missing and how to get it. */
  constructor(message: string) {
    super(message);
    this.name = "NotebookRunnerError";
  }
}

const DRIVER = fileURLToPath(new URL("./_nbrun.py", import.meta.url));

async function hasJupyterClient(python: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import jupyter_client"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * The Python interpreter that has jupyter_client.
 *
 * @param explicit Use this one (checked).
 * @returns The interpreter command.
 * @throws NotebookRunnerError when none has jupyter_client (install Debian's
 *   python3-jupyter-client or set SEITPP_PYTHON).
 */
export async function findPython(explicit?: string): Promise<string> {
  const env = Deno.env.get("SEITPP_PYTHON");
  const candidates = explicit ? [explicit] : env ? [env] : ["python3", "/usr/bin/python3"];
  for (const c of candidates) if (await hasJupyterClient(c)) return c;
  throw new NotebookRunnerError(
    `Cannot find a Python with jupyter_client (tried ${candidates.join(", ")}): install ` +
      `Debian's python3-jupyter-client or set SEITPP_PYTHON`,
  );
}

function describeCell(nb: Notebook, index: number): string {
  const cell = nb.cells[index];
  const codeNo = nb.cells.slice(0, index + 1).filter((c) => c.cell_type === "code").length;
  const first = cellSource(cell).split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  const snippet = first.length > 60 ? first.slice(0, 57) + "..." : first;
  const id = cell.id ? ` id ${cell.id}` : "";
  return `cell ${index + 1} (code cell ${codeNo}${id}: ${JSON.stringify(snippet)})`;
}

function errorText(outputs: Array<Record<string, unknown>>): string | undefined {
  const err = outputs.find((o) => o.output_type === "error");
  if (!err) return undefined;
  const tb = Array.isArray(err.traceback) ? (err.traceback as string[]).join("\n") : "";
  // deno-lint-ignore no-control-regex
  const clean = tb.replace(/\x1b\[[0-9;]*m/g, "");
  const head = `${err.ename}: ${err.evalue}`;
  const lines = clean.split("\n").filter((l) => l.trim() !== "" && l.trim() !== head).slice(0, 4);
  return [head, ...lines.map((l) => "    " + l.trim())].join("\n");
}

/**
 * Checks an executed notebook against the convention: no error output, every cell that must
 * produce output has some, and the driver's per-cell status.
 *
 * @param path The notebook's name for messages.
 * @param executed The executed copy.
 * @param cells The driver's per-cell results.
 * @returns Problem messages, each naming the notebook and cell (empty when fine).
 */
export function checkExecuted(path: string, executed: Notebook, cells: CellResult[]): string[] {
  const problems: string[] = [];
  for (const r of cells) {
    const cell = executed.cells[r.index];
    const where = `${path} ${describeCell(executed, r.index)}`;
    const err = errorText(cell.outputs ?? []);
    if (r.status === "skipped") continue;
    if (r.status === "error") {
      problems.push(`${where} failed: ${err ?? "the kernel reported an error"}`);
    } else if (r.status === "timeout" || r.status === "died") {
      problems.push(`${where} ${r.status === "timeout" ? "timed out" : "killed the kernel"}`);
    } else if (err !== undefined) {
      problems.push(`${where} printed an error: ${err}`);
    } else if (requiresOutput(cell) && (cell.outputs ?? []).length === 0) {
      problems.push(
        `${where} produced no output (end it with an expression or display(...), ` +
          `or mark it "// no-output")`,
      );
    }
  }
  const skipped = cells.filter((c) => c.status === "skipped").length;
  if (skipped > 0) problems.push(`${path}: ${skipped} later code cells were not run`);
  return problems;
}

/**
 * Executes notebooks headless, each in a fresh Deno kernel (cwd = its folder, SEITPP_BUDGET
 * set), writes the executed copies to `outDir` (never into the source files) and checks them.
 *
 * @param paths .ipynb files.
 * @param options Output folder, budget, timeouts, interpreter.
 * @returns One result per notebook, in order; `ok` false with named problems on failure.
 * @throws NotebookRunnerError when Python/jupyter_client or the kernel is missing;
 *   SyntaxError for a file that is not an nbformat 4 notebook.
 */
export async function runNotebooks(
  paths: readonly string[],
  options: RunNotebooksOptions = {},
): Promise<NotebookResult[]> {
  const outDir = options.outDir ?? "out/notebooks";
  const sources = new Map<string, Notebook>();
  const items: Array<{ path: string; out: string }> = [];
  const used = new Set<string>();
  for (const p of paths) {
    sources.set(p, parseNotebook(await Deno.readTextFile(p), p));
    let out = resolve(join(outDir, basename(p)));
    if (resolve(p) === out) {
      throw new RangeError(`Cannot write the executed copy of "${p}" over itself: choose --out`);
    }
    if (used.has(out)) out = resolve(join(outDir, basename(dirname(p)) + "_" + basename(p)));
    used.add(out);
    items.push({ path: resolve(p), out });
  }
  const python = await findPython(options.python);
  const job = {
    kernel: options.kernel ?? "deno",
    notebooks: items,
    env: {
      ...(options.env ?? {}),
      [BUDGET_ENV]: options.budget ?? "full",
      NO_COLOR: "1",
    },
    cell_timeout: options.cellTimeoutS ?? 1800,
    quiet: options.quietS ?? 0.3,
    startup_timeout: options.startupTimeoutS ?? 60,
  };
  const child = new Deno.Command(python, {
    args: [DRIVER],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(job)));
  await writer.close();
  const onLog = options.onLog ?? ((l: string) => console.error(l));
  const logDone = (async () => {
    let buf = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim() && !line.includes('"deno jupyter" is unstable')) onLog(line);
      }
    }
    if (buf.trim()) onLog(buf);
  })();
  const stdout = new Response(child.stdout).text();
  const [status, text] = await Promise.all([child.status, stdout, logDone]);
  const results: NotebookResult[] = [];
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  for (const line of lines) {
    const r = JSON.parse(line);
    if (r.fatal) throw new NotebookRunnerError(r.fatal);
    const src = paths[items.findIndex((it) => it.path === r.path)] ?? r.path;
    const cells: CellResult[] = (r.cells ?? []).map((c: CellResult) => ({
      index: c.index,
      status: c.status,
      seconds: c.seconds,
      outputs: 0,
    }));
    const problems: string[] = [];
    if (r.error) {
      problems.push(`${src}: ${r.error}`);
    } else {
      const executed = parseNotebook(await Deno.readTextFile(r.out), r.out);
      for (const c of cells) c.outputs = executed.cells[c.index].outputs?.length ?? 0;
      problems.push(...checkExecuted(src, executed, cells));
    }
    results.push({
      path: src,
      out: r.out,
      ok: problems.length === 0,
      problems,
      cells,
      seconds: r.seconds ?? 0,
      kernelSeconds: r.kernel_seconds ?? 0,
      displayUpdates: r.updates ?? 0,
      lateOutputs: r.late ?? 0,
      attempts: r.attempts ?? 1,
      refused: r.refused ?? [],
    });
  }
  if (results.length !== items.length) {
    throw new NotebookRunnerError(
      `The notebook driver stopped after ${results.length} of ${items.length} notebooks ` +
        `(exit code ${status.code})`,
    );
  }
  return results;
}
