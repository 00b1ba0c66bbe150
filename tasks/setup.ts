/**
 * Install what the tests need on a Debian machine that has only Deno: the packages of
 * .ci/apt-packages (apt-get, as root or with passwordless sudo) and Deno's Jupyter kernel.
 * Quick and silent but for one line when everything is present.
 *
 *     deno task setup [--check] [--packages FILE]
 *
 * Then it prebuilds the wasm backend's C kernels into the cache (lib/backend/native_build.ts).
 *
 * `--check` installs nothing: it reports what is missing with the exact command to run.
 * `--packages` reads another list (same format). Not root and no passwordless sudo: stops at
 * once with the exact command. `deno task ok` and `deno task test` run this first; so does
 * .ci/run.
 *
 * Exit codes: 0 everything present (or installed); 1 something missing that this run could not
 * install (the message says how); 2 bad usage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { buildNativeKernels } from "@lib/backend";
import {
  detectPrivilege,
  kernelStateFromJson,
  missingPackages,
  PACKAGE_LIST,
  parsePackageList,
  planInstall,
  SetupError,
} from "./_setup.ts";

const USAGE = "usage: deno task setup [--check] [--packages FILE]";

async function runInherited(cmd: string[]): Promise<void> {
  console.error(`setup: ${cmd.join(" ")}`);
  const r = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  }).output();
  if (!r.success) throw new SetupError(`\`${cmd.join(" ")}\` failed with exit code ${r.code}`);
}

async function kernelState(): Promise<ReturnType<typeof kernelStateFromJson>> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("jupyter", {
      args: ["kernelspec", "list", "--json"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      env: { PYDEVD_DISABLE_FILE_VALIDATION: "1" },
    }).output();
  } catch (e) {
    throw new SetupError(
      `Cannot run \`jupyter kernelspec list\` (${(e as Error).message}): install Debian's ` +
        `jupyter-core`,
    );
  }
  if (!out.success) throw new SetupError(`\`jupyter kernelspec list --json\` failed`);
  const real = (p: string) => {
    try {
      return Deno.realPathSync(p);
    } catch {
      return p;
    }
  };
  return kernelStateFromJson(new TextDecoder().decode(out.stdout), Deno.execPath(), real);
}

async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        check: { type: "boolean", default: false },
        packages: { type: "string", default: PACKAGE_LIST },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    console.error(`setup: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const listPath = values.packages;
  let text: string;
  try {
    text = await Deno.readTextFile(listPath);
  } catch (e) {
    console.error(`setup: cannot read the package list "${listPath}": ${(e as Error).message}`);
    return 2;
  }
  try {
    const packages = parsePackageList(text, listPath);
    const missing = await missingPackages(packages);
    const plan = values.check
      ? planInstall(missing, "none", "--check installs nothing")
      : planInstall(missing, await detectPrivilege());
    if (plan.kind === "refuse") throw new SetupError(plan.message);
    if (plan.kind === "run") {
      for (const cmd of plan.commands) await runInherited(cmd);
      const still = await missingPackages(packages);
      if (still.length) {
        throw new SetupError(`apt-get finished but these are still missing: ${still.join(" ")}`);
      }
    }
    const kernel = await kernelState();
    if (kernel !== "ok") {
      const cmd = [Deno.execPath(), "jupyter", "--install", "--force"];
      if (values.check) {
        throw new SetupError(
          `The Deno Jupyter kernel is ${
            kernel === "missing" ? "not installed" : "installed for another Deno"
          }. Run:\n\n  deno jupyter --install --force\n`,
        );
      }
      await runInherited(cmd);
      if (await kernelState() !== "ok") {
        throw new SetupError(`\`${cmd.join(" ")}\` ran but Jupyter still lists no "deno" kernel`);
      }
    }
    const installed = plan.kind === "run" ? `, ${missing.length} installed now` : "";
    console.error(
      `setup: ${packages.length} Debian packages and the Deno Jupyter kernel present${installed}`,
    );
    if (!values.check) {
      // prebuild the wasm backend's C kernels (cached; one line when built, one when not)
      const built = await buildNativeKernels();
      if ("reason" in built) {
        console.error(
          `setup: the C kernels were not built (the JS ones will run): ${built.reason}`,
        );
      }
    }
    return 0;
  } catch (e) {
    if (e instanceof SetupError || e instanceof SyntaxError) {
      console.error(`setup: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
