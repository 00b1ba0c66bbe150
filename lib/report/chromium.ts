/**
 * A minimal headless-Chromium driver over the DevTools protocol (Deno's WebSocket): launch with
 * a fresh profile and no network services, open pages, evaluate scripts, take screenshots.
 * Used for static figure export and for checking HTML output.
 *
 * @module
 */

import { pathToFileURL } from "node:url";
import { join } from "node:path";

/** Options for {@linkcode Chromium.launch}. */
export interface ChromiumOptions {
  /**
   * The browser executable. @default $SEITPP_CHROMIUM, else the first of /usr/bin/chromium,
   * /usr/bin/chromium-browser, /usr/bin/google-chrome that exists
   */
  executable?: string;
  /** Milliseconds to wait for the browser to start and for each protocol call. @default 60000 */
  timeoutMs?: number;
}

/** Thrown when the browser cannot be started or stops answering. */
export class ChromiumError extends Error {
  /** @param message What failed. */
  constructor(message: string) {
    super(message);
    this.name = "ChromiumError";
  }
}

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

/**
 * The browser executable that {@linkcode Chromium.launch} would use.
 *
 * @returns A path, or undefined when none is installed.
 */
export function findChromium(): string | undefined {
  const env = Deno.env.get("SEITPP_CHROMIUM");
  if (env) return env;
  for (const c of CANDIDATES) {
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch {
      // not there
    }
  }
  return undefined;
}

type Pending = { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void };
type Waiter = { method: string; sessionId?: string; resolve: () => void };

/** A running headless Chromium with one DevTools websocket. Close it with {@linkcode Chromium.close}. */
export class Chromium {
  readonly #child: Deno.ChildProcess;
  readonly #ws: WebSocket;
  readonly #profile: string;
  readonly #timeoutMs: number;
  readonly #drained: Promise<void>;
  readonly #pending = new Map<number, Pending>();
  #waiters: Waiter[] = [];
  #nextId = 1;
  #closed = false;
  #pageCounter = 0;

  private constructor(
    child: Deno.ChildProcess,
    ws: WebSocket,
    profile: string,
    timeoutMs: number,
    drained: Promise<void>,
  ) {
    this.#child = child;
    this.#drained = drained;
    this.#ws = ws;
    this.#profile = profile;
    this.#timeoutMs = timeoutMs;
    ws.onmessage = (ev) => this.#onMessage(String(ev.data));
    ws.onclose = () => this.#failAll("the DevTools connection closed");
  }

  /** The temporary profile folder (deleted on close); pages may write scratch files here. */
  get profileDir(): string {
    return this.#profile;
  }

  /**
   * Starts headless Chromium with a fresh profile in a temporary folder.
   *
   * @param options Executable and timeout.
   * @returns A connected browser.
   * @throws ChromiumError when no browser is installed, it exits early or does not print its
   *   DevTools address in time.
   */
  static async launch(options: ChromiumOptions = {}): Promise<Chromium> {
    const exe = options.executable ?? findChromium();
    if (!exe) {
      throw new ChromiumError(
        `Cannot find chromium (tried ${CANDIDATES.join(", ")}); install Debian's "chromium" ` +
          `or set SEITPP_CHROMIUM`,
      );
    }
    const timeoutMs = options.timeoutMs ?? 60_000;
    const profile = await Deno.makeTempDir({ prefix: "seitpp-chromium-" });
    const args = [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--hide-scrollbars",
      "--mute-audio",
      "--allow-file-access-from-files",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(exe, { args, stdin: "null", stdout: "null", stderr: "piped" })
        .spawn();
    } catch (e) {
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw new ChromiumError(`Cannot start "${exe}": ${e}`);
    }
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let log = "";
    let url: string | undefined;
    const deadline = Date.now() + timeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      while (url === undefined) {
        const left = deadline - Date.now();
        const chunk = await Promise.race([
          reader.read(),
          new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), Math.max(0, left))),
        ]);
        clearTimeout(timer);
        if (chunk === "timeout") {
          throw new ChromiumError(`"${exe}" did not start in ${timeoutMs} ms`);
        }
        if (chunk.done) throw new ChromiumError(`"${exe}" exited before it was ready:\n${log}`);
        log += chunk.value;
        url = /DevTools listening on (ws:\/\/\S+)/.exec(log)?.[1];
      }
    } catch (e) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await reader.cancel().catch(() => {});
      await child.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw e;
    }
    // Keep draining stderr so the browser never blocks on a full pipe.
    const drained = (async () => {
      try {
        while (!(await reader.read()).done) { /* discard */ }
      } catch { /* closed */ }
    })();
    const ws = new WebSocket(url);
    try {
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = (e) => reject(new ChromiumError(`Cannot connect to ${url}: ${e}`));
      });
    } catch (e) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
      await drained;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw e;
    }
    return new Chromium(child, ws, profile, timeoutMs, drained);
  }

  #onMessage(text: string): void {
    const msg = JSON.parse(text) as {
      id?: number;
      method?: string;
      sessionId?: string;
      result?: Record<string, unknown>;
      error?: { message: string; data?: string };
    };
    if (msg.id !== undefined) {
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      if (msg.error) p.reject(new ChromiumError(`${msg.error.message} ${msg.error.data ?? ""}`));
      else p.resolve(msg.result ?? {});
      return;
    }
    if (msg.method) {
      const hit = this.#waiters.filter((w) =>
        w.method === msg.method && (w.sessionId === undefined || w.sessionId === msg.sessionId)
      );
      this.#waiters = this.#waiters.filter((w) => !hit.includes(w));
      for (const w of hit) w.resolve();
    }
  }

  #failAll(reason: string): void {
    for (const p of this.#pending.values()) p.reject(new ChromiumError(reason));
    this.#pending.clear();
  }

  /**
   * Sends one DevTools protocol command.
   *
   * @param method Protocol method, e.g. "Page.navigate".
   * @param params Its parameters.
   * @param sessionId Target session for page-level commands.
   * @returns The command's result object.
   * @throws ChromiumError on a protocol error, a closed connection or a timeout.
   */
  async send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    if (this.#closed) throw new ChromiumError(`Cannot send ${method}: the browser is closed`);
    const id = this.#nextId++;
    const msg: Record<string, unknown> = { id, method, params };
    if (sessionId !== undefined) msg.sessionId = sessionId;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await new Promise<Record<string, unknown>>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        timer = setTimeout(() => {
          this.#pending.delete(id);
          reject(new ChromiumError(`${method} did not answer in ${this.#timeoutMs} ms`));
        }, this.#timeoutMs);
        this.#ws.send(JSON.stringify(msg));
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A promise for the next protocol event of a kind (register before triggering it).
   *
   * @param method Event name, e.g. "Page.loadEventFired".
   * @param sessionId Only events of this session.
   * @returns Resolves when the event arrives; rejects after the timeout.
   */
  waitFor(method: string, sessionId?: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waiter: Waiter = { method, sessionId, resolve: () => {} };
    const p = new Promise<void>((resolve, reject) => {
      waiter.resolve = () => {
        clearTimeout(timer);
        resolve();
      };
      timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new ChromiumError(`${method} did not arrive in ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
    });
    this.#waiters.push(waiter);
    return p;
  }

  /**
   * Opens a new page (tab).
   *
   * @param size Viewport in CSS pixels. @default 1000x800
   * @returns The page.
   * @throws ChromiumError as {@linkcode Chromium.send}.
   */
  async newPage(
    size: { width: number; height: number } = { width: 1000, height: 800 },
  ): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, targetId as string, sessionId as string, ++this.#pageCounter);
    await page.send("Page.enable");
    await page.send("Runtime.enable");
    await page.setViewport(size);
    return page;
  }

  /**
   * Closes the browser, waits for it to exit and deletes its profile.
   *
   * @returns Resolves when everything is cleaned up.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.send("Browser.close");
    } catch {
      // fall through to kill
    }
    this.#closed = true;
    this.#failAll("the browser was closed");
    if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CONNECTING) {
      const closed = new Promise<void>((r) => this.#ws.addEventListener("close", () => r()));
      this.#ws.close();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
    }
    const exited = await Promise.race([
      this.#child.status.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
    ]);
    if (!exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
      await this.#child.status;
    }
    await this.#drained;
    await Deno.remove(this.#profile, { recursive: true }).catch(() => {});
  }
}

/** Result of {@linkcode Page.evaluate} when the script threw. */
export class PageScriptError extends Error {
  /** @param message The exception text from the page. */
  constructor(message: string) {
    super(message);
    this.name = "PageScriptError";
  }
}

/** One browser tab. */
export class Page {
  readonly #browser: Chromium;
  readonly #targetId: string;
  readonly #sessionId: string;
  readonly #index: number;
  #files = 0;

  /** @internal Use {@linkcode Chromium.newPage}. */
  constructor(browser: Chromium, targetId: string, sessionId: string, index: number) {
    this.#browser = browser;
    this.#targetId = targetId;
    this.#sessionId = sessionId;
    this.#index = index;
  }

  /**
   * Sends a protocol command to this page.
   *
   * @param method Protocol method.
   * @param params Its parameters.
   * @returns The result object.
   */
  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.#browser.send(method, params, this.#sessionId);
  }

  /**
   * Sets the viewport size (device scale factor 1).
   *
   * @param size Width and height in CSS pixels.
   */
  async setViewport(size: { width: number; height: number }): Promise<void> {
    await this.send("Emulation.setDeviceMetricsOverride", {
      width: size.width,
      height: size.height,
      deviceScaleFactor: 1,
      mobile: false,
    });
  }

  /**
   * Loads a URL and waits for its load event.
   *
   * @param url Usually a file:// URL.
   * @throws ChromiumError when navigation fails or times out.
   */
  async goto(url: string): Promise<void> {
    const loaded = this.#browser.waitFor("Page.loadEventFired", this.#sessionId);
    const r = await this.send("Page.navigate", { url });
    if (typeof r.errorText === "string" && r.errorText) {
      loaded.catch(() => {});
      throw new ChromiumError(`Cannot load ${url}: ${r.errorText}`);
    }
    await loaded;
  }

  /**
   * Loads an HTML document: written to a file in the browser profile and opened as file://
   * (so it may load other local files, e.g. plotly.js from node_modules).
   *
   * @param html A complete HTML document.
   * @returns The file:// URL used.
   */
  async setContent(html: string): Promise<string> {
    const path = join(this.#browser.profileDir, `page-${this.#index}-${++this.#files}.html`);
    await Deno.writeTextFile(path, html);
    const url = pathToFileURL(path).href;
    await this.goto(url);
    return url;
  }

  /**
   * Evaluates a JavaScript expression in the page, awaiting a returned promise.
   *
   * @param expression JavaScript source; its value must be JSON-serialisable.
   * @returns The value.
   * @throws PageScriptError when the script throws or the promise rejects.
   */
  async evaluate<T = unknown>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    }) as { result?: { value?: unknown }; exceptionDetails?: Record<string, unknown> };
    if (r.exceptionDetails) {
      const ex = r.exceptionDetails as { text?: string; exception?: { description?: string } };
      throw new PageScriptError(ex.exception?.description ?? ex.text ?? "script failed");
    }
    return r.result?.value as T;
  }

  /**
   * A PNG screenshot of the viewport (or of the whole page with `fullPage`).
   *
   * @param options `fullPage` captures beyond the viewport.
   * @returns PNG bytes.
   */
  async screenshot(options: { fullPage?: boolean } = {}): Promise<Uint8Array> {
    const params: Record<string, unknown> = { format: "png" };
    if (options.fullPage) {
      const size = await this.evaluate<{ w: number; h: number }>(
        "({ w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight })",
      );
      params.captureBeyondViewport = true;
      params.clip = { x: 0, y: 0, width: size.w, height: size.h, scale: 1 };
    }
    const { data } = await this.send("Page.captureScreenshot", params);
    return Uint8Array.from(atob(data as string), (c) => c.charCodeAt(0));
  }

  /** Closes the tab. */
  async close(): Promise<void> {
    await this.#browser.send("Target.closeTarget", { targetId: this.#targetId });
  }
}
