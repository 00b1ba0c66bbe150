/**
 * `deno task gpu:check [--fixtures DIR] [--steps 5] [--batch 32] [--backends webgpu,wasm]
 *   [--allow-software] [--parity-timeout 150] [--bench-timeout 240]`
 *
 * One prepared check for a machine with a GPU (../shared/GPU.md; tasks/gpu_check.sh
 * unpacks Deno and the Vulkan loader there and calls this): which WebGPU adapter Deno
 * sees, the mtm and cls parity sections on webgpu against the fixtures, and the
 * training-step benchmark (fixture-sized MTM and classifier, batch 32) on webgpu next to
 * wasm. Prints a few summary lines last; exits 1 when parity fails or a step crashes.
 * Each part runs as its own process with a time limit, so the whole stays under ~8 min.
 *
 * A software adapter (lavapipe) is refused unless `--allow-software`: this is how the
 * script itself is tested on a machine without a GPU (there with e.g. `--batch 2 --steps 1`:
 * lavapipe needs minutes per fixture-sized step).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ensureXdgRuntimeDir } from "@lib/backend";

const args = parseArgs({
  args: Deno.args,
  options: {
    fixtures: { type: "string" },
    steps: { type: "string", default: "5" },
    batch: { type: "string", default: "32" },
    backends: { type: "string", default: "webgpu,wasm" },
    "allow-software": { type: "boolean", default: false },
    "parity-timeout": { type: "string", default: "150" },
    "bench-timeout": { type: "string", default: "240" },
  },
});

const root = new URL("../", import.meta.url);
/** The fixtures: --fixtures, SEITPP_PARITY_DIR, ../shared/parity/public, or shared/ inside the tree. */
function fixtureDir(): string {
  const given = args.values.fixtures ?? Deno.env.get("SEITPP_PARITY_DIR");
  if (given !== undefined) return given;
  for (const rel of ["../shared/parity/public", "shared/parity/public"]) {
    const dir = new URL(rel, root).pathname;
    try {
      Deno.statSync(`${dir}/meta.json`);
      return dir;
    } catch {
      // next
    }
  }
  return new URL("../shared/parity/public", root).pathname;
}
const fixtures = fixtureDir();
const summary: string[] = [];
let failed = false;
const t0 = performance.now();

/** Runs `deno run -A <script> ...` with a time limit; returns its exit code and output. */
async function deno(script: string, argv: string[], timeoutS: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(script, root).pathname, ...argv],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutS * 1000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, signal: out.signal, text };
}

// 1. The adapter.
ensureXdgRuntimeDir();
const gpu = (navigator as { gpu?: GPU }).gpu;
const adapter = gpu === undefined ? null : await gpu.requestAdapter();
const info = adapter?.info as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined;
const name = info
  ? [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => s).join(" / ")
  : "none";
const software = info === undefined || info.isFallbackAdapter === true ||
  /llvmpipe|lavapipe|swiftshader/i.test(name);
summary.push(`gpu:check adapter: ${name}${software ? " (software)" : ""}`);
console.log(summary[0]);
if (adapter === null || (software && !args.values["allow-software"])) {
  console.log(
    "gpu:check: no hardware WebGPU adapter. On an NVIDIA machine: the Vulkan loader " +
      "(libvulkan1) and VK_DRIVER_FILES=<nvidia_icd.json> (see tasks/gpu_check.sh); " +
      "--allow-software runs the check on a software adapter anyway.",
  );
  Deno.exit(1);
}

// 2. Parity, mtm and cls sections, on webgpu.
{
  const r = await deno("tasks/parity.ts", [
    fixtures,
    "--backend",
    "webgpu",
    "--only",
    "mtm,cls",
  ], Number(args.values["parity-timeout"]));
  const lines = r.text.split("\n").filter((l) => /^parity:|^backend:/.test(l));
  for (const l of lines) console.log(l);
  const verdict = lines.find((l) => /^parity: (PASS|FAIL)/.test(l)) ??
    `parity: no verdict (exit ${r.code}${r.signal ? `, ${r.signal}: time limit` : ""}): ` +
      r.text.trim().split("\n").slice(-2).join(" | ");
  if (!/^parity: PASS/.test(verdict)) {
    failed = true;
    // the failing quantities, for the record
    for (const l of r.text.split("\n").filter((l) => l.includes('"ok":false')).slice(0, 5)) {
      console.log(`  ${l.slice(0, 300)}`);
    }
  }
  summary.push(`gpu:check parity (mtm, cls on webgpu): ${verdict.replace(/^parity: /, "")}`);
}

// 3. The training-step benchmark, webgpu next to wasm.
{
  const r = await deno("bench/train_step.ts", [
    "--backend",
    args.values.backends,
    "--model",
    "mtm,cls",
    "--steps",
    args.values.steps,
    "--batch",
    args.values.batch,
    "--warmup",
    "1",
  ], Number(args.values["bench-timeout"]));
  const rows = r.text.split("\n").filter((l) => /^(webgpu|wasm|cpu) (mtm|cls) /.test(l));
  for (const l of r.text.split("\n").filter((l) => /^backend:/.test(l))) console.log(l);
  for (const l of rows) {
    console.log(l);
    const m = l.match(
      /^(\S+) (\S+) B=(\d+) W=1: (\d+) ms\/step.*?([\d.]+) samples\/s, ([\d.]+) GFLOP\/s/,
    );
    if (m) {
      summary.push(
        `gpu:check step ${m[1]} ${m[2]} (batch ${m[3]}): ${m[4]} ms, ${m[5]} samples/s, ${
          m[6]
        } GFLOP/s`,
      );
    }
  }
  if (r.code !== 0) {
    failed = true;
    summary.push(
      `gpu:check bench: exit ${r.code}${r.signal ? ` (${r.signal}: time limit)` : ""}: ` +
        (r.text.split("\n").find((l) => /error/i.test(l)) ??
          r.text.trim().split("\n").slice(-2).join(" | ")),
    );
  }
}

console.log("");
for (const l of summary) console.log(l);
console.log(
  `gpu:check ${failed ? "FAILED" : "done"} in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
);
Deno.exit(failed ? 1 : 0);
