/**
 * Running a task or a parser on hostile input in a bounded subprocess: V8's heap capped
 * with `--max-old-space-size`, a watchdog that kills it after 10 s (coreutils `timeout`),
 * and its peak resident memory measured: by GNU time (`/usr/bin/time -f %M`, which reports
 * the largest RSS of the processes it waited for) when installed, otherwise by sampling
 * `/proc/<pid>/status` VmHWM (the kernel's high-water mark) every 10 ms until exit
 * (`SEITPP_HOSTILE_METER=proc` forces the sampler, to check it; `SEITPP_HOSTILE_REPORT=1`
 * prints each run's exit code, peak and time).
 *
 * @module
 */
import assert from "node:assert/strict";

/** The project root. */
export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Every case must finish in this many seconds ... */
export const TIME_LIMIT_S = 10;
/** ... and peak at fewer resident bytes than this. */
export const MEMORY_LIMIT_BYTES = 2 ** 30;
/** The V8 heap cap of the subprocess, MB. */
export const HEAP_MB = 512;

const GNU_TIME = "/usr/bin/time";

/** What a bounded run gives back. */
export interface BoundedRun {
  /** Exit code (137 when the watchdog killed it). */
  code: number;
  stdout: string;
  stderr: string;
  /** Peak resident set size, bytes. */
  peakBytes: number;
  /** Wall-clock seconds. */
  seconds: number;
  /** How the peak was measured. */
  meter: "gnu-time" | "proc-vmhwm";
}

/** Options of {@linkcode runBounded}. */
export interface BoundedOptions {
  /** Working folder. @default {ROOT} */
  cwd?: string;
  /** Extra environment. */
  env?: Record<string, string>;
  /** Variables to remove from the inherited environment. */
  unsetEnv?: string[];
}

async function hasGnuTime(): Promise<boolean> {
  if (Deno.env.get("SEITPP_HOSTILE_METER") === "proc") return false; // to check the fallback
  try {
    return (await Deno.stat(GNU_TIME)).isFile;
  } catch {
    return false;
  }
}

async function vmHwmBytes(pid: number): Promise<number> {
  try {
    const s = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /VmHWM:\s+(\d+) kB/.exec(s);
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0; // exited
  }
}

/**
 * Run `deno <args>` (e.g. `["run", "-A", "tasks/decode.ts", ...]`, or `["task", ...]`)
 * bounded in heap, time and measured in memory. The V8 heap cap goes in through
 * `DENO_V8_FLAGS`, so it applies to `deno task` children too.
 *
 * @param args deno's arguments
 * @param options working folder, environment
 * @returns exit code, output, peak RSS and wall time
 */
export async function runBounded(
  args: string[],
  options: BoundedOptions = {},
): Promise<BoundedRun> {
  const gnu = await hasGnuTime();
  const report = gnu ? await Deno.makeTempFile({ prefix: "seitpp-hostile-rss-" }) : "";
  const watchdog = ["timeout", "--signal=KILL", `${TIME_LIMIT_S}s`, Deno.execPath(), ...args];
  const argv = gnu ? [GNU_TIME, "-f", "%M", "-o", report, ...watchdog] : watchdog;
  const t0 = performance.now();
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: options.cwd ?? ROOT,
    clearEnv: true,
    env: {
      ...withoutKeys(Deno.env.toObject(), options.unsetEnv ?? []),
      DENO_V8_FLAGS: `--max-old-space-size=${HEAP_MB}`,
      NO_COLOR: "1",
      ...options.env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let peak = 0;
  let done = false;
  const sampler = (async () => {
    // the deno process is a child of `timeout`: sample every descendant's high-water mark
    while (!done) {
      for (const pid of await descendants(child.pid)) peak = Math.max(peak, await vmHwmBytes(pid));
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const out = await child.output();
  done = true;
  await sampler;
  const seconds = (performance.now() - t0) / 1000;
  if (gnu) {
    const kb = Number((await Deno.readTextFile(report)).trim().split("\n").pop());
    await Deno.remove(report).catch(() => {});
    if (Number.isFinite(kb)) peak = Math.max(peak, kb * 1024);
  }
  const dec = new TextDecoder();
  if (Deno.env.get("SEITPP_HOSTILE_REPORT") === "1") {
    console.error(
      `[hostile] exit ${out.code}, peak ${(peak / 2 ** 20).toFixed(0)} MiB, ${
        seconds.toFixed(2)
      } s: ${args.slice(0, 4).join(" ")}`,
    );
  }
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    peakBytes: peak,
    seconds,
    meter: gnu ? "gnu-time" : "proc-vmhwm",
  };
}

function withoutKeys(env: Record<string, string>, keys: string[]): Record<string, string> {
  const out = { ...env };
  for (const k of keys) delete out[k];
  return out;
}

async function descendants(root: number): Promise<number[]> {
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    try {
      const kids = await Deno.readTextFile(`/proc/${out[i]}/task/${out[i]}/children`);
      for (const k of kids.trim().split(/\s+/)) if (k !== "") out.push(Number(k));
    } catch {
      // gone
    }
  }
  return out;
}

/** What a refused run must show. */
export interface Refusal {
  /** The exit code. */
  code: number;
  /** The one stderr line (after any `Task ...` line of `deno task`) must match this. */
  message: RegExp;
  /** Progress lines to leave out before counting (a task's banner). */
  ignore?: RegExp;
}

/**
 * Assert a run was refused cleanly: the exit code, one line on stderr matching the
 * message and holding no stack trace, within the time and memory limits.
 *
 * @param r the run
 * @param want exit code and message
 * @returns the error line
 */
export function assertRefused(r: BoundedRun, want: Refusal): string {
  assertBounded(r);
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("Task "))
    // a backend banner is not part of the error
    .filter((l) => !/^backend:? /.test(l) && !(want.ignore?.test(l) ?? false));
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `a stack trace:\n${r.stderr}`);
  assert.match(lines[0], want.message);
  assert.equal(r.code, want.code, `exit code; stderr: ${r.stderr}`);
  return lines[0];
}

/**
 * Assert the time and memory limits.
 * @param r the run
 */
export function assertBounded(r: BoundedRun): void {
  assert.notEqual(r.code, 137, `killed by the ${TIME_LIMIT_S} s watchdog; stderr: ${r.stderr}`);
  assert.ok(r.seconds < TIME_LIMIT_S, `took ${r.seconds.toFixed(1)} s`);
  assert.ok(r.peakBytes > 0, `peak memory was not measured (${r.meter})`);
  assert.ok(
    r.peakBytes < MEMORY_LIMIT_BYTES,
    `peak RSS ${(r.peakBytes / 2 ** 20).toFixed(0)} MiB (${r.meter}); stderr: ${r.stderr}`,
  );
}

/**
 * A fresh temporary folder for one test, removed afterwards.
 * @param fn the test body
 */
export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seitpp-hostile-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The names in a folder, sorted (to show that nothing was written).
 * @param dir the folder
 * @returns its entries' names
 */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}
