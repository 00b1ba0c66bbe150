/**
 * Checks of notebooks as a real Jupyter front end shows them: a page of the classic Notebook
 * server (see `jupyter_server.ts`) in headless Chromium (see `chromium.ts`). For every output
 * of every code cell, what the notebook JSON holds is compared with what the page drew: Plotly
 * figures (a `.main-svg` with the spec's traces), tables (rows), images (loaded, non-zero size),
 * errors. The live run executes a notebook's cells through the front end and records every
 * change of the live progress display (`.seitpp-progress`, updated through its display id).
 *
 * @module
 */

import type { Page } from "./chromium.ts";

/** What the page drew for one output of a code cell. */
export interface RenderedOutput {
  /** 1-based index of the cell in the notebook. */
  cell: number;
  /** Index of the output within the cell. */
  output: number;
  /** "figure", "table", "image", "html", "text", "error" or "other". */
  kind: string;
  /** Whether the page drew what the output holds. */
  ok: boolean;
  /** What was found, e.g. "2/2 traces, main-svg 900x380" or "13 rows". */
  detail: string;
}

/** The check of one notebook page. */
export interface RenderReport {
  /** Whether the notebook is trusted (untrusted notebooks do not run output scripts). */
  trusted: boolean;
  /** Every output of every code cell, in order. */
  outputs: RenderedOutput[];
  /** Counts per kind (drawn / expected). */
  summary: Record<string, { ok: number; total: number }>;
  /** True when every output was drawn and none is an error. */
  ok: boolean;
}

/** One observation of the live progress display. */
export interface ProgressSnapshot {
  /** Milliseconds since observation started. */
  t: number;
  /** Number of `.seitpp-progress` elements in the page. */
  count: number;
  /** The first one's headline text. */
  headline: string;
}

/** The outcome of {@linkcode runNotebookLive}. */
export interface LiveRunReport {
  /** Every distinct state of the progress display seen, in order. */
  snapshots: ProgressSnapshot[];
  /** Distinct headline texts seen while the cells ran. */
  distinctHeadlines: number;
  /** Most `.seitpp-progress` elements seen at once (1: updated in place). */
  maxCount: number;
  /** Seconds from the first cell queued to the last finished. */
  seconds: number;
  /** Code cells that ended without an execution count or with an error. */
  failedCells: string[];
  /** Kernel events seen while the cells ran (restarting, dead, disconnected...). */
  kernelEvents: string[];
  /**
   * Outputs the front end dropped: they arrived after their cell's reply and idle status, when
   * the classic front end has already forgotten the request (it keeps late outputs only for the
   * most recent one), e.g. "display_data for cell 8".
   */
  droppedOutputs: string[];
  /** Each code cell at the end: 1-based index, prompt, output types. */
  cells: Array<{ cell: number; prompt: unknown; outputs: string[] }>;
  /** PNGs of the page, scrolled to the progress display, at two moments while it updated. */
  midRunScreenshots: Uint8Array[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the classic Notebook page has loaded its notebook and the kernel is connected.
 *
 * @param page A page navigated to a notebook URL.
 * @param timeoutMs How long to wait. @default 60000
 * @throws Error naming what did not happen in time.
 */
export async function waitForNotebookPage(page: Page, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let state = "";
  while (Date.now() < deadline) {
    state = await page.evaluate<string>(
      `(() => { const J = window.Jupyter; if (!J || !J.notebook) return "no Jupyter app";
        if (!J.notebook._fully_loaded) return "notebook not loaded";
        const k = J.notebook.kernel; if (!k || !k.is_connected()) return "kernel not connected";
        return "ready"; })()`,
    );
    if (state === "ready") return;
    await sleep(250);
  }
  throw new Error(`The notebook page did not get ready in ${timeoutMs} ms: ${state}`);
}

// In-page: pair each output of each code cell (JSON) with its .output_area element and check it.
const INSPECT = `(() => {
  const nb = Jupyter.notebook, out = [];
  nb.get_cells().forEach((cell, ci) => {
    if (cell.cell_type !== "code") return;
    const areas = cell.output_area.element[0].querySelectorAll(":scope > .output_area");
    cell.output_area.outputs.forEach((o, oi) => {
      const el = areas[oi], data = o.data || {}, r = { cell: ci + 1, output: oi };
      const html = typeof data["text/html"] === "string" ? data["text/html"]
        : Array.isArray(data["text/html"]) ? data["text/html"].join("") : "";
      const visible = (e) => !!e && e.getBoundingClientRect().width > 0 &&
        e.getBoundingClientRect().height > 0;
      if (o.output_type === "error") {
        out.push({ ...r, kind: "error", ok: false, detail: o.ename + ": " + o.evalue }); return;
      }
      if (!el) { out.push({ ...r, kind: "missing", ok: false, detail: "no output element" }); return; }
      const spec = data["application/vnd.plotly.v1+json"];
      if (spec) {
        const gd = el.querySelector(".js-plotly-plot"), svg = el.querySelector(".main-svg");
        const want = (spec.data || []).length, have = gd && gd.data ? gd.data.length : 0;
        const drawn = el.querySelectorAll(".main-svg .trace, .main-svg .hm, .main-svg .slice").length;
        const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
        out.push({ ...r, kind: "figure", ok: !!svg && visible(svg) && have === want && drawn > 0,
          detail: have + "/" + want + " traces, " + drawn + " drawn, main-svg " +
            Math.round(box.width) + "x" + Math.round(box.height) });
        return;
      }
      const imgs = [...el.querySelectorAll("img")];
      const wantImgs = (html.match(/<img\\b/g) || []).length ||
        (!html && data["image/png"] ? 1 : 0);
      if (wantImgs > 0) {
        const loaded = imgs.filter((i) => i.complete && i.naturalWidth > 0 && visible(i)).length;
        out.push({ ...r, kind: "image", ok: loaded >= wantImgs,
          detail: loaded + "/" + wantImgs + " images loaded" }); return;
      }
      if (/<table\\b/.test(html)) {
        const t = el.querySelector("table"), rows = t ? t.querySelectorAll("tr").length : 0;
        out.push({ ...r, kind: "table", ok: visible(t) && rows > 1, detail: rows + " rows" });
        return;
      }
      if (html) {
        const sub = el.querySelector(".output_subarea");
        out.push({ ...r, kind: "html", ok: visible(sub), detail: (sub ? sub.textContent : "").trim().slice(0, 60) });
        return;
      }
      if (o.output_type === "stream" || data["text/plain"] !== undefined) {
        const sub = el.querySelector(".output_subarea");
        out.push({ ...r, kind: "text", ok: visible(sub), detail: (sub ? sub.textContent : "").trim().slice(0, 60) });
        return;
      }
      out.push({ ...r, kind: "other", ok: visible(el), detail: Object.keys(data).join(",") });
    });
  });
  return { trusted: !!nb.trusted, outputs: out };
})()`;

/**
 * Compares every output of the notebook open in the page with what the page drew.
 *
 * @param page A page where {@linkcode waitForNotebookPage} returned.
 * @returns The report (`ok` false when something is not drawn or is an error).
 */
export async function inspectNotebookPage(page: Page): Promise<RenderReport> {
  const r = await page.evaluate<{ trusted: boolean; outputs: RenderedOutput[] }>(INSPECT);
  const summary: Record<string, { ok: number; total: number }> = {};
  for (const o of r.outputs) {
    summary[o.kind] ??= { ok: 0, total: 0 };
    summary[o.kind].total++;
    if (o.ok) summary[o.kind].ok++;
  }
  return { ...r, summary, ok: r.outputs.every((o) => o.ok) };
}

/**
 * Polls {@linkcode inspectNotebookPage} until everything is drawn (figures draw asynchronously)
 * or the time is up.
 *
 * @param page The page.
 * @param timeoutMs How long to wait. @default 60000
 * @returns The last report.
 */
export async function waitForRendered(page: Page, timeoutMs = 60_000): Promise<RenderReport> {
  const deadline = Date.now() + timeoutMs;
  let report = await inspectNotebookPage(page);
  while (!report.ok && Date.now() < deadline) {
    if (report.outputs.some((o) => o.kind === "error")) break;
    await sleep(500);
    report = await inspectNotebookPage(page);
  }
  return report;
}

/**
 * A PNG of the whole notebook: the classic page scrolls inside `#site`, so that is unrolled
 * first (height capped at 16000 CSS pixels).
 *
 * @param page The page.
 * @returns PNG bytes.
 */
export async function notebookScreenshot(page: Page): Promise<Uint8Array> {
  await page.evaluate(`(() => {
    const site = document.getElementById("site");
    if (site) { site.style.height = "auto"; site.style.overflow = "visible"; }
    document.body.style.overflow = "visible"; document.body.style.height = "auto";
    document.documentElement.style.maxHeight = "16000px";
    document.documentElement.style.overflow = "hidden";
    return true; })()`);
  return await page.screenshot({ fullPage: true });
}

/**
 * Runs every cell of the notebook open in the page through the front end (autosave off, so
 * the file is not rewritten) and observes the live progress display while they run.
 *
 * @param page A page where {@linkcode waitForNotebookPage} returned.
 * @param options `timeoutMs` for the whole run (default 900000).
 * @returns What was observed.
 * @throws Error when the cells do not finish in time.
 */
export async function runNotebookLive(
  page: Page,
  options: { timeoutMs?: number } = {},
): Promise<LiveRunReport> {
  const timeoutMs = options.timeoutMs ?? 900_000;
  await page.evaluate(`(() => {
    Jupyter.notebook.set_autosave_interval(0);
    const t0 = performance.now(), log = [];
    window.__seitppProgress = log;
    let last = "";
    const look = () => {
      const els = document.querySelectorAll("#notebook .seitpp-progress");
      if (els.length === 0) return;
      const head = els[0].firstElementChild ? els[0].firstElementChild.textContent : "";
      const key = els.length + "|" + head;
      if (key === last) return;
      last = key;
      log.push({ t: Math.round(performance.now() - t0), count: els.length, headline: head });
    };
    new MutationObserver(look).observe(document.getElementById("notebook"),
      { childList: true, subtree: true, characterData: true });
    const events = window.__seitppKernelEvents = [];
    const dropped = window.__seitppDropped = [];
    Jupyter.notebook.events.on("received_unsolicited_message.Kernel", (e, msg) => {
      const id = msg && msg.parent_header && msg.parent_header.msg_id;
      const i = Jupyter.notebook.get_cells().findIndex((c) =>
        c.last_msg_id === id || (c.__seitppMsgIds || []).includes(id));
      dropped.push(msg.header.msg_type + " for cell " + (i < 0 ? "?" : i + 1));
    });
    // the idle status of each request: outputs come on iopub, which can lag far behind the
    // shell replies that set the prompts (e.g. behind a 4.8 MB figure that carries plotly.js)
    const idle = window.__seitppIdle = new Set();
    Jupyter.notebook.events.on("finished_iopub.Kernel", (e, d) => idle.add(d.msg_id));
    // remember which cell sent each request (a cell's last_msg_id does not survive its reply)
    const k = Jupyter.notebook.kernel, origExecute = k.execute;
    k.execute = function (code, callbacks, options) {
      const id = origExecute.call(this, code, callbacks, options);
      const cell = Jupyter.notebook.get_cells().find((x) =>
        x.cell_type === "code" && x.get_text() === code && !x.__seitppMsgIds);
      if (cell) cell.__seitppMsgIds = [id];
      return id;
    };
    Jupyter.notebook.events.on("kernel_restarting.Kernel kernel_dead.Kernel " +
      "kernel_disconnected.Kernel kernel_reconnecting.Kernel kernel_killed.Kernel",
      (e) => events.push(e.type + " at " + Math.round(performance.now() - t0) + " ms"));
    Jupyter.notebook.clear_all_output();
    Jupyter.notebook.execute_all_cells();
    return true; })()`);
  const t0 = Date.now();
  const mid: Uint8Array[] = [];
  let midSeen = 0;
  let done = false;
  while (Date.now() - t0 < timeoutMs) {
    await sleep(500);
    const s = await page.evaluate<{ pending: number; seen: number }>(`(() => ({
      pending: Jupyter.notebook.get_cells().filter((c) => c.cell_type === "code" &&
        (c.input_prompt_number === "*" || (c.__seitppMsgIds || []).some((id) =>
          !window.__seitppIdle.has(id)))).length,
      seen: window.__seitppProgress.length }))()`);
    if (s.pending > 0 && s.seen >= (mid.length === 0 ? 2 : midSeen + 3) && mid.length < 2) {
      // the page scrolls to the last queued cell: bring the progress display into view
      await page.evaluate(`(() => { const e = document.querySelector("#notebook .seitpp-progress");
        if (e) e.scrollIntoView({ block: "center" }); return true; })()`);
      mid.push(await page.screenshot());
      midSeen = s.seen;
    }
    if (s.pending === 0) {
      done = true;
      break;
    }
  }
  if (!done) {
    const state = await page.evaluate<string>(`JSON.stringify(Jupyter.notebook.get_cells()
      .filter((c) => c.cell_type === "code").map((c) => ({ prompt: c.input_prompt_number,
        outputs: c.output_area.outputs.length, requests: (c.__seitppMsgIds || []).map((id) =>
          window.__seitppIdle.has(id) ? "idle" : "busy") })))
      + "; kernel events: " + JSON.stringify(window.__seitppKernelEvents)
      + "; dropped outputs: " + JSON.stringify(window.__seitppDropped)`);
    throw new Error(`The notebook's cells did not finish in ${timeoutMs} ms: ${state}`);
  }
  const seconds = (Date.now() - t0) / 1000;
  const r = await page.evaluate<{
    snapshots: ProgressSnapshot[];
    failed: string[];
    events: string[];
    dropped: string[];
    cells: LiveRunReport["cells"];
  }>(`(() => ({
    snapshots: window.__seitppProgress,
    cells: Jupyter.notebook.get_cells().map((c, i) => c.cell_type !== "code" ? null : ({
      cell: i + 1, prompt: c.input_prompt_number === undefined ? null : c.input_prompt_number,
      outputs: c.output_area.outputs.map((o) => o.output_type) })).filter((c) => c !== null),
    events: window.__seitppKernelEvents,
    dropped: window.__seitppDropped,
    failed: Jupyter.notebook.get_cells().map((c, i) => [c, i]).filter(([c]) =>
      c.cell_type === "code" && c.get_text().trim() !== "" &&
      (typeof c.input_prompt_number !== "number" ||
        c.output_area.outputs.some((o) => o.output_type === "error")))
      .map(([c, i]) => "cell " + (i + 1) + " (prompt " + c.input_prompt_number + ")") }))()`);
  return {
    snapshots: r.snapshots,
    distinctHeadlines: new Set(r.snapshots.map((s) => s.headline)).size,
    maxCount: Math.max(0, ...r.snapshots.map((s) => s.count)),
    seconds,
    failedCells: r.failed,
    kernelEvents: r.events,
    droppedOutputs: r.dropped,
    cells: r.cells,
    midRunScreenshots: mid,
  };
}
