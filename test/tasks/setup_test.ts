/**
 * The set-up step (tasks/setup.ts): the package list, the decision root / sudo -n / neither, the
 * kernelspec check, and the task itself spawned in --check mode.
 */
import assert from "node:assert/strict";
import {
  installedFromDpkg,
  kernelStateFromJson,
  PACKAGE_LIST,
  parsePackageList,
  planInstall,
} from "../../tasks/_setup.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

Deno.test("parsePackageList: names in order, comments and blanks skipped, duplicates once", () => {
  const text = "# head\n\nchromium  # browser\njupyter-core\n  chromium\nlib+x.y-1\n";
  assert.deepEqual(parsePackageList(text, "list"), ["chromium", "jupyter-core", "lib+x.y-1"]);
});

Deno.test("parsePackageList: a line that is not a package name is a SyntaxError naming file and line", () => {
  assert.throws(() => parsePackageList("chromium\n\napt-get install x\n", "pk.txt"), {
    name: "SyntaxError",
    message: 'Cannot read "pk.txt" line 3: "apt-get install x" is not a Debian package name ' +
      "(one name per line)",
  });
  assert.throws(() => parsePackageList("Chromium\n", "pk.txt"), SyntaxError);
});

Deno.test(".ci/apt-packages lists what the tests and the front-end check need", async () => {
  const list = parsePackageList(await Deno.readTextFile(PACKAGE_LIST), PACKAGE_LIST);
  for (
    const p of [
      "chromium",
      "python3-jupyter-client",
      "jupyter-core",
      "jupyter-notebook",
      "mesa-vulkan-drivers",
      "libopenblas0-pthread",
      "python3-torch",
    ]
  ) assert.ok(list.includes(p), `${p} missing from ${PACKAGE_LIST}`);
  // .ci/run installs through the same step, not a list of its own
  const ci = await Deno.readTextFile(`${ROOT}.ci/run`);
  assert.match(ci, /deno task setup/);
  assert.doesNotMatch(ci, /apt-get install/);
});

Deno.test("installedFromDpkg keeps only packages whose status is installed", () => {
  const out = "chromium installed\njupyter-core config-files\nlibvulkan1:amd64 installed\n" +
    "python3-torch not-installed\n\n";
  assert.deepEqual([...installedFromDpkg(out)], ["chromium", "libvulkan1"]);
});

Deno.test("planInstall: nothing missing does nothing, whatever the privilege", () => {
  for (const p of ["root", "sudo", "none"] as const) {
    assert.deepEqual(planInstall([], p), { kind: "nothing" });
  }
});

Deno.test("planInstall: root runs apt-get update then install of exactly the missing packages", () => {
  assert.deepEqual(planInstall(["chromium", "jupyter-notebook"], "root"), {
    kind: "run",
    commands: [
      ["apt-get", "update", "-q"],
      ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "jupyter-notebook"],
    ],
  });
});

Deno.test("planInstall: passwordless sudo runs the same commands through sudo -n", () => {
  const plan = planInstall(["chromium"], "sudo");
  assert.equal(plan.kind, "run");
  const sudo = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"];
  assert.deepEqual(plan.kind === "run" && plan.commands, [
    [...sudo, "apt-get", "update", "-q"],
    [...sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
  ]);
});

Deno.test("planInstall: neither root nor sudo refuses with the exact command to run", () => {
  const plan = planInstall(["chromium", "python3-torch"], "none");
  assert.deepEqual(plan, {
    kind: "refuse",
    message: "2 Debian packages the tests need are missing (chromium, python3-torch) and this " +
      "user is not root and has no passwordless sudo. Run:\n\n  sudo apt-get update && sudo " +
      "apt-get install -y --no-install-recommends chromium python3-torch\n\nthen run the " +
      "command again.",
  });
});

Deno.test("kernelStateFromJson: ok, missing, or a kernelspec that starts another Deno", () => {
  const spec = (argv0: string) =>
    JSON.stringify({
      kernelspecs: { deno: { spec: { argv: [argv0, "jupyter", "--kernel"] } }, python3: {} },
    });
  assert.equal(kernelStateFromJson(spec("/usr/bin/deno"), "/usr/bin/deno"), "ok");
  assert.equal(kernelStateFromJson(spec("/old/deno"), "/usr/bin/deno"), "other-deno");
  // a symlink to the running executable is the same Deno
  const real = (p: string) => p === "/usr/bin/deno" ? "/opt/deno/deno" : p;
  assert.equal(kernelStateFromJson(spec("/usr/bin/deno"), "/opt/deno/deno", real), "ok");
  assert.equal(
    kernelStateFromJson(JSON.stringify({ kernelspecs: {} }), "/usr/bin/deno"),
    "missing",
  );
  assert.throws(() => kernelStateFromJson("not json", "/usr/bin/deno"), SyntaxError);
  assert.throws(() => kernelStateFromJson("{}", "/usr/bin/deno"), SyntaxError);
});

async function setup(args: string[]): Promise<{ code: number; err: string; ms: number }> {
  const t0 = performance.now();
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}tasks/setup.ts`, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: p.code, err: new TextDecoder().decode(p.stderr), ms: performance.now() - t0 };
}

Deno.test("deno task setup --check stops at once with the exact command when a package is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const list = `${dir}/packages`;
    await Deno.writeTextFile(list, "# test\ncoreutils\nseitpp-no-such-package\n");
    const r = await setup(["--check", "--packages", list]);
    assert.equal(r.code, 1, r.err);
    assert.equal(
      r.err,
      "setup: 1 Debian package the tests need is missing (seitpp-no-such-package) and " +
        "--check installs nothing. Run:\n\n  sudo apt-get update && sudo apt-get install -y " +
        "--no-install-recommends seitpp-no-such-package\n\nthen run the command again.\n",
    );
    await Deno.writeTextFile(list, "coreutils\nnot a name\n");
    const bad = await setup(["--check", "--packages", list]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /line 2: "not a name" is not a Debian package name/);
    assert.equal((await setup(["--bogus"])).code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task setup --check: this machine has every listed package and the kernel", async () => {
  // `deno task test` runs `deno task setup` first, so this holds wherever the suite runs.
  const r = await setup(["--check"]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^setup: \d+ Debian packages and the Deno Jupyter kernel present\n$/);
});
