/**
 * Runs test/_support/torch_helper.py with the Python that has PyTorch: $SEITPP_TORCH_PYTHON,
 * else Debian's /usr/bin/python3 with python3-torch (installed by .ci/run). Tests fail (not
 * skip) when it is missing.
 *
 * @module
 */

/** The Python interpreter with torch 1.13. */
export const TORCH_PYTHON: string = Deno.env.get("SEITPP_TORCH_PYTHON") ?? "/usr/bin/python3";

const HELPER = decodeURIComponent(new URL("./torch_helper.py", import.meta.url).pathname);

/**
 * Run one helper subcommand.
 * @param args the subcommand and its arguments
 * @returns its stdout
 * @throws {Error} with the helper's stderr when it fails
 */
export async function torchHelper(...args: string[]): Promise<string> {
  const out = await new Deno.Command(TORCH_PYTHON, {
    args: [HELPER, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { OMP_NUM_THREADS: "1" },
  }).output();
  const td = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${TORCH_PYTHON} torch_helper.py ${args.join(" ")} failed (python3-torch installed? ` +
        `set SEITPP_TORCH_PYTHON):\n${td.decode(out.stderr)}`,
    );
  }
  return td.decode(out.stdout);
}
