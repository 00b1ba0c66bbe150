/**
 * The set-up step's pieces (used by tasks/setup.ts, tested in test/tasks/setup_test.ts): read the
 * Debian package list, find what is missing, decide how to install it (as root, with
 * passwordless sudo, or not at all: then the exact command to run), and check the Deno Jupyter
 * kernel.
 *
 * @module
 */

/** The one package list (.ci/apt-packages), shared with .ci/run. */
export const PACKAGE_LIST: string = decodeURIComponent(
  new URL("../.ci/apt-packages", import.meta.url).pathname,
);

/** How this process may install system packages. */
export type Privilege = "root" | "sudo" | "none";

/** What the set-up step does about missing packages. */
export type InstallPlan =
  | { kind: "nothing" }
  | { kind: "run"; commands: string[][] }
  | { kind: "refuse"; message: string };

/** Thrown when the set-up cannot complete; the message says what to run instead. */
export class SetupError extends Error {
  /** @param message What is missing and the exact command that fixes it. */
  constructor(message: string) {
    super(message);
    this.name = "SetupError";
  }
}

const NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/**
 * Parses the package list: one Debian package name per line, `#` comments and blank lines.
 *
 * @param text The file's contents.
 * @param source The file name for messages.
 * @returns The package names in file order, without duplicates.
 * @throws SyntaxError naming the file and line of an entry that is not a Debian package name.
 */
export function parsePackageList(text: string, source: string): string[] {
  const out: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/#.*/, "").trim();
    if (line === "") continue;
    if (!NAME.test(line)) {
      throw new SyntaxError(
        `Cannot read "${source}" line ${i + 1}: ${JSON.stringify(line)} is not a Debian ` +
          `package name (one name per line)`,
      );
    }
    if (!out.includes(line)) out.push(line);
  }
  return out;
}

/**
 * The packages that `dpkg-query -W -f='${Package} ${db:Status-Status}\n'` reports as installed.
 *
 * @param output dpkg-query's standard output.
 * @returns Names whose status is "installed" (config-files, half-installed... are not).
 */
export function installedFromDpkg(output: string): Set<string> {
  const installed = new Set<string>();
  for (const line of output.split("\n")) {
    const [name, status] = line.trim().split(/\s+/);
    if (name && status === "installed") installed.add(name.replace(/:.*/, ""));
  }
  return installed;
}

/**
 * The apt-get commands for the missing packages, or, without the right to run them, the exact
 * command for the user.
 *
 * @param missing Packages not installed.
 * @param privilege What this process may do.
 * @param why Why "none" cannot install, for the message.
 * @returns "nothing" when none is missing; "run" with `apt-get update` then `apt-get install`
 *   (prefixed with `sudo -n` for "sudo"); "refuse" with a message holding the command to run.
 */
export function planInstall(
  missing: readonly string[],
  privilege: Privilege,
  why = "this user is not root and has no passwordless sudo",
): InstallPlan {
  if (missing.length === 0) return { kind: "nothing" };
  const update = ["apt-get", "update", "-q"];
  const install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", ...missing];
  if (privilege === "root") return { kind: "run", commands: [update, install] };
  if (privilege === "sudo") {
    const sudo = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"];
    return { kind: "run", commands: [[...sudo, ...update], [...sudo, ...install]] };
  }
  const command = `sudo apt-get update && sudo apt-get install -y --no-install-recommends ` +
    missing.join(" ");
  return {
    kind: "refuse",
    message: `${missing.length} Debian package${missing.length === 1 ? "" : "s"} the tests ` +
      `need ${missing.length === 1 ? "is" : "are"} missing (${missing.join(", ")}) and ${why}. ` +
      `Run:\n\n  ${command}\n\nthen run the command again.`,
  };
}

async function succeeds(cmd: string, args: string[]): Promise<boolean> {
  try {
    const r = await new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

/**
 * What this process may do: root (uid 0), passwordless sudo (`sudo -n true` succeeds), or none.
 *
 * @returns The privilege.
 */
export async function detectPrivilege(): Promise<Privilege> {
  if (Deno.uid() === 0) return "root";
  return await succeeds("sudo", ["-n", "true"]) ? "sudo" : "none";
}

/**
 * The packages of the list that dpkg does not report as installed.
 *
 * @param packages Package names.
 * @returns The missing ones, in list order.
 * @throws SetupError when dpkg-query cannot run (not a Debian system), naming the packages.
 */
export async function missingPackages(packages: readonly string[]): Promise<string[]> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("dpkg-query", {
      args: ["-W", "-f=${Package} ${db:Status-Status}\n", ...packages],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
  } catch (e) {
    throw new SetupError(
      `Cannot run dpkg-query (${(e as Error).message}): the set-up step installs Debian ` +
        `packages with apt-get; on another system install the equivalents of: ` +
        packages.join(" "),
    );
  }
  // dpkg-query exits 1 when some package is unknown to it; the output still lists the rest.
  const installed = installedFromDpkg(new TextDecoder().decode(out.stdout));
  return packages.filter((p) => !installed.has(p));
}

/** The state of the "deno" Jupyter kernel as Jupyter sees it. */
export type KernelState = "ok" | "missing" | "other-deno";

/**
 * Reads `jupyter kernelspec list --json` output and says whether the "deno" kernel starts this
 * Deno.
 *
 * @param json The command's standard output.
 * @param denoPath The real path of the running Deno executable.
 * @param realPath Resolves a path to its real path (symlinks followed); identity when missing.
 * @returns "ok", "missing" (no "deno" kernelspec) or "other-deno" (it starts another executable).
 * @throws SyntaxError when the output is not the kernelspec JSON.
 */
export function kernelStateFromJson(
  json: string,
  denoPath: string,
  realPath: (p: string) => string = (p) => p,
): KernelState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new SyntaxError(`Cannot parse "jupyter kernelspec list --json" output: ${e}`);
  }
  const specs = (parsed as { kernelspecs?: Record<string, { spec?: { argv?: unknown } }> })
    ?.kernelspecs;
  if (typeof specs !== "object" || specs === null) {
    throw new SyntaxError(`"jupyter kernelspec list --json" output has no "kernelspecs" object`);
  }
  const argv = specs.deno?.spec?.argv;
  if (!Array.isArray(argv) || typeof argv[0] !== "string") return "missing";
  return realPath(argv[0]) === realPath(denoPath) ? "ok" : "other-deno";
}
