/**
 * Debian's classic Jupyter Notebook server (`jupyter-notebook`, notebook 6) on 127.0.0.1 with a
 * random token and a throw-away config and runtime folder: started, asked over its REST API,
 * stopped with its kernels. Used by the notebook front-end check (`deno task notebooks:frontend`).
 *
 * @module
 */

/** Options for {@linkcode JupyterServer.start}. */
export interface JupyterServerOptions {
  /** The folder the server serves (notebook URLs are relative to it). */
  root: string;
  /** Extra environment for the server and so for its kernels (e.g. SEITPP_BUDGET). */
  env?: Record<string, string>;
  /** The server executable. @default "jupyter-notebook" */
  executable?: string;
  /** Milliseconds to wait for the server to answer. @default 60000 */
  timeoutMs?: number;
}

/** Thrown when the notebook server cannot be started or does not answer. */
export class JupyterServerError extends Error {
  /** @param message What failed (with the end of the server's log). */
  constructor(message: string) {
    super(message);
    this.name = "JupyterServerError";
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function randomToken(): string {
  const b = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A running notebook server. Stop it with {@linkcode JupyterServer.stop}. */
export class JupyterServer {
  /** Base URL, e.g. `http://127.0.0.1:8888`. */
  readonly url: string;
  /** The access token (sent as `?token=` or an Authorization header). */
  readonly token: string;
  readonly #child: Deno.ChildProcess;
  readonly #scratch: string;
  readonly #log: { text: string; rejected: number };
  readonly #drained: Promise<void>;
  #stopped = false;

  private constructor(
    url: string,
    token: string,
    child: Deno.ChildProcess,
    scratch: string,
    log: { text: string; rejected: number },
    drained: Promise<void>,
  ) {
    this.url = url;
    this.token = token;
    this.#child = child;
    this.#scratch = scratch;
    this.#log = log;
    this.#drained = drained;
  }

  /**
   * How many kernel messages the server refused as "Invalid Signature" (their HMAC did not
   * match: the message, e.g. an output or an idle status, never reached the page).
   */
  get rejectedMessages(): number {
    return this.#log.rejected;
  }

  /** The last lines the server printed (for error messages). */
  get logTail(): string {
    return this.#log.text.split("\n").slice(-15).join("\n");
  }

  /**
   * Starts `jupyter-notebook` on a free port of 127.0.0.1 and waits until `/api/status` answers.
   *
   * @param options Served folder, environment, executable, timeout.
   * @returns The running server.
   * @throws JupyterServerError when the executable is missing (install Debian's
   *   jupyter-notebook), exits early or does not answer in time.
   */
  static async start(options: JupyterServerOptions): Promise<JupyterServer> {
    const exe = options.executable ?? "jupyter-notebook";
    const timeoutMs = options.timeoutMs ?? 60_000;
    const port = freePort();
    const token = randomToken();
    const scratch = await Deno.makeTempDir({ prefix: "seitpp-jupyter-" });
    const args = [
      "--no-browser",
      "--ip=127.0.0.1",
      `--port=${port}`,
      "--port-retries=0",
      `--notebook-dir=${options.root}`,
      `--NotebookApp.token=${token}`,
      "--NotebookApp.open_browser=False",
    ];
    if (Deno.uid() === 0) args.push("--allow-root");
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(exe, {
        args,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: {
          ...options.env,
          JUPYTER_CONFIG_DIR: `${scratch}/config`,
          JUPYTER_RUNTIME_DIR: `${scratch}/runtime`,
          PYDEVD_DISABLE_FILE_VALIDATION: "1",
        },
      }).spawn();
    } catch (e) {
      await Deno.remove(scratch, { recursive: true }).catch(() => {});
      throw new JupyterServerError(
        `Cannot start "${exe}" (${(e as Error).message}): install Debian's jupyter-notebook ` +
          `(deno task setup)`,
      );
    }
    const log = { text: "", rejected: 0 };
    const drain = async (s: ReadableStream<Uint8Array>) => {
      let partial = "";
      try {
        for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
          log.text = (log.text + chunk).slice(-20_000);
          const lines = (partial + chunk).split("\n");
          partial = lines.pop() ?? "";
          log.rejected += lines.filter((l) => l.includes("Invalid Signature")).length;
        }
      } catch { /* closed */ }
    };
    const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).then(() => {});
    const server = new JupyterServer(
      `http://127.0.0.1:${port}`,
      token,
      child,
      scratch,
      log,
      drained,
    );
    let exited = false;
    child.status.then(() => exited = true);
    const deadline = Date.now() + timeoutMs;
    while (true) {
      if (exited) {
        await server.stop();
        throw new JupyterServerError(`"${exe}" exited before it answered:\n${server.logTail}`);
      }
      try {
        const r = await server.api("GET", "/api/status");
        if (r !== undefined) return server;
      } catch { /* not yet */ }
      if (Date.now() > deadline) {
        await server.stop();
        throw new JupyterServerError(
          `"${exe}" did not answer on port ${port} in ${timeoutMs} ms:\n${server.logTail}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * The browser URL of a notebook, token included.
   *
   * @param path The notebook's path relative to the served folder.
   * @returns `http://127.0.0.1:PORT/notebooks/PATH?token=...`.
   */
  notebookUrl(path: string): string {
    const p = path.split("/").map(encodeURIComponent).join("/");
    return `${this.url}/notebooks/${p}?token=${this.token}`;
  }

  /**
   * One REST call with the token.
   *
   * @param method HTTP method.
   * @param path e.g. "/api/sessions".
   * @returns The parsed JSON body (undefined for an empty body).
   * @throws JupyterServerError on a non-2xx status.
   */
  async api(method: string, path: string): Promise<unknown> {
    const r = await fetch(`${this.url}${path}`, {
      method,
      headers: { Authorization: `token ${this.token}` },
    });
    const text = await r.text();
    if (!r.ok) throw new JupyterServerError(`${method} ${path}: HTTP ${r.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  /**
   * Shuts down every kernel session the server holds.
   *
   * @returns How many sessions were shut down.
   */
  async shutdownSessions(): Promise<number> {
    const sessions = await this.api("GET", "/api/sessions") as Array<{ id: string }>;
    for (const s of sessions) await this.api("DELETE", `/api/sessions/${s.id}`);
    return sessions.length;
  }

  /** Shuts down the kernels, stops the server (SIGTERM, then SIGKILL after 10 s), cleans up. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.shutdownSessions().catch(() => {});
    try {
      this.#child.kill("SIGTERM");
    } catch { /* gone */ }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      this.#child.status.then(() => true),
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), 10_000)),
    ]);
    clearTimeout(timer);
    if (!exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
      await this.#child.status;
    }
    await this.#drained;
    await Deno.remove(this.#scratch, { recursive: true }).catch(() => {});
  }
}
