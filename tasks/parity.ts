/**
 * `deno task parity <fixture-dir> [--backend cpu|wasm|webgpu|auto] [--only a,b]`
 *
 * Runs every registered parity section (lib/parity SECTIONS) against a fixture folder
 * made by the reference code, prints one JSON line per compared quantity on stdout and
 * a summary on stderr. Exits 0 only if every comparison passed; 1 if any failed or a
 * section crashed; 2 for bad arguments (a missing or unreadable fixture folder included,
 * in one line). A relative folder is the caller's (`INIT_CWD`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { BACKEND_REQUESTS, type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import { type ComparisonResult, Fixture, SECTIONS } from "@lib/parity";
import { callerPath } from "./_paths.ts";

const USAGE = "usage: deno task parity <fixture-dir> [--backend cpu|wasm|webgpu|auto] " +
  "[--only section,section]";

function fail(message: string): never {
  console.error(`parity: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function jsonLine(r: ComparisonResult): string {
  return JSON.stringify(
    r,
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v),
  );
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: { backend: { type: "string", default: "cpu" }, only: { type: "string" } },
    });
  } catch (e) {
    fail((e as Error).message);
  }
  const [arg, ...rest] = parsed.positionals;
  if (arg === undefined) fail("missing the fixture folder");
  const dir = callerPath(arg);
  if (rest.length > 0) fail(`unexpected arguments: ${rest.join(" ")}`);
  const backend = parsed.values.backend as BackendRequest;
  if (!BACKEND_REQUESTS.includes(backend)) fail(`unknown backend "${backend}"`);
  const known = SECTIONS.map((s) => s.name);
  const only = parsed.values.only?.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const name of only ?? []) {
    if (!known.includes(name)) fail(`unknown section "${name}" (known: ${known.join(", ")})`);
  }
  let fixture: Fixture;
  try {
    fixture = await Fixture.open(dir);
  } catch (e) {
    // a missing folder, a file instead of one, unreadable meta.json: one line, no stack
    const name = (e as Error)?.name;
    if (
      e instanceof SyntaxError || e instanceof TypeError ||
      ["NotFound", "NotADirectory", "IsADirectory", "PermissionDenied"].includes(name)
    ) {
      console.error(`parity: ${(e as Error).message.split("\n")[0]}`);
      Deno.exit(2);
    }
    throw e;
  }
  const info = await initBackend({ backend });
  console.error(describeBackend(info));
  const sections = SECTIONS.filter((s) => only === undefined || only.includes(s.name));
  if (sections.length === 0) fail("no section to run");

  let failed = 0;
  let total = 0;
  for (const section of sections) {
    const t0 = performance.now();
    let n = 0, bad = 0;
    try {
      const results = await section.run(fixture);
      for await (const r of results as AsyncIterable<ComparisonResult>) {
        console.log(jsonLine(r));
        n++;
        if (!r.ok) bad++;
      }
    } catch (e) {
      bad++;
      n++;
      console.log(jsonLine({
        section: section.name,
        quantity: "section",
        shape: [],
        max_abs_err: Infinity,
        max_rel_err: Infinity,
        worst_ratio: Infinity,
        tolerance: "exact",
        ok: false,
        error: `the section crashed: ${(e as Error).stack ?? e}`,
      }));
    }
    if (n === 0) {
      bad++;
      console.error(`parity: section ${section.name} compared nothing`);
    }
    total += n;
    failed += bad;
    console.error(
      `parity: ${section.name}: ${n - bad}/${n} passed (${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s)`,
    );
  }
  console.error(
    `parity: ${failed === 0 ? "PASS" : "FAIL"} ${total - failed}/${total} on ${info.name}`,
  );
  return failed === 0 ? 0 : 1;
}

Deno.exit(await main());
