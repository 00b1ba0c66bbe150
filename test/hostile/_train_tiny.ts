/**
 * Shared by the training tasks' hostile-use tests: a tiny learnable token dataset in the
 * official format, overrides that shrink the demo models to it, and a task runner that
 * spawns `deno run` with a watchdog.
 */
import assert from "node:assert/strict";
import { Rng } from "@lib/random";
import { writeTokenDataset } from "@lib/tokens";
import { readRunLog } from "@lib/train";

/** The project root (tasks are run from it, as `deno task` does). */
export const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const K = 16, C = 4, n = 10;

/**
 * Train and test splits of a small learnable dataset (K = 16, 4 classes, 10x10).
 * @param dir where to write them
 * @param records training records
 * @returns the two data files
 */
export async function tinyDataset(
  dir: string,
  records = 64,
): Promise<{ train: string; test: string }> {
  const out = {
    train: `${dir}/syn-train-token.data.bin.gz`,
    test: `${dir}/syn-test-token.data.bin.gz`,
  };
  for (const [path, N, seed] of [[out.train, records, 1], [out.test, 16, 2]] as const) {
    const rng = new Rng(seed);
    const codes = new Int32Array(N * n * n), labels = new Int32Array(N);
    for (let i = 0; i < N; i++) {
      labels[i] = rng.int(0, C);
      for (let j = 0; j < n * n; j++) {
        codes[i * n * n + j] = rng.uniform() < 0.7 ? labels[i] * 4 + rng.int(0, 4) : rng.int(0, K);
      }
    }
    await writeTokenDataset(path, codes, { gridSide: n, codebookSize: K, labels });
  }
  return out;
}

/** Overrides that shrink the demo models to the tiny data (8x8 crop of 10x10). */
export const TINY_MODEL = [
  "--model.gridSide=8",
  "--model.patchSize=2",
  "--model.codebookSize=16",
  "--model.tokenDim=8",
  "--model.embedDim=16",
  "--model.depth=1",
  "--model.numHeads=2",
];

/** The MTM decoder of the tiny pre-training model. */
export const TINY_DECODER = [
  "--model.decoderEmbedDim=16",
  "--model.decoderDepth=1",
  "--model.decoderNumHeads=2",
];

/** What a task process did. */
export interface TaskResult {
  /** Exit code. */
  code: number;
  /** Its stdout. */
  stdout: string;
  /** Its stderr. */
  stderr: string;
}

/** Options of {@linkcode runTask}. */
export interface RunTaskOptions {
  /** Kill it (SIGKILL) and fail after this many ms. @default {60000} */
  watchdogMs?: number;
  /**
   * Called every 50 ms while it runs, with its pid: return a signal to send it once
   * (e.g. when its log shows some steps).
   */
  signalWhen?: () => Promise<Deno.Signal | null>;
}

/**
 * Run a task (`deno run -A <args>`) from the project root.
 * @param args the script and its arguments
 * @param options watchdog, signal trigger
 * @returns code and output
 */
export async function runTask(args: string[], options: RunTaskOptions = {}): Promise<TaskResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killed = false;
  const watchdog = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, options.watchdogMs ?? 60000);
  let signalled = false;
  let done = false;
  const poll = async () => {
    while (!done && !signalled && options.signalWhen) {
      const sig = await options.signalWhen();
      if (sig !== null && !done) {
        child.kill(sig);
        signalled = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const poller = poll();
  const out = await child.output();
  done = true;
  clearTimeout(watchdog);
  await poller;
  assert.ok(!killed, `watchdog: ${args.join(" ")} ran too long`);
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/**
 * The run folder a task printed.
 * @param stdout its stdout
 * @returns the folder
 */
export function runFolder(stdout: string): string {
  const m = /^run folder: (.+)$/m.exec(stdout);
  assert.ok(m, `no run folder in:\n${stdout}`);
  return m[1].trim();
}

/**
 * The losses of a run's logged steps, in order.
 * @param dir the run folder
 * @returns one per `step` record
 */
export async function stepLosses(dir: string): Promise<number[]> {
  return (await readRunLog(dir)).filter((x) => x.type === "step").map((x) => x.loss as number);
}

/**
 * The number of `step` records in the one run folder under `out` (0 when none yet).
 * @param out the runs folder
 * @returns the count
 */
export async function loggedSteps(out: string): Promise<number> {
  try {
    for await (const e of Deno.readDir(out)) {
      if (!e.isDirectory) continue;
      const text = await Deno.readTextFile(`${out}/${e.name}/log.jsonl`).catch(() => "");
      return text.split("\n").filter((l) => l.includes('"type":"step"')).length;
    }
  } catch {
    // not made yet
  }
  return 0;
}
