/**
 * Building the C kernels of ./native/kernels.c into a shared library, once per source,
 * compiler and flags: compiled at first use with the system C compiler (`SEITPP_CC`, else
 * `cc`, `gcc`, `clang`), cached outside the repository (`$XDG_CACHE_HOME/seitpp`, else
 * `~/.cache/seitpp`), written atomically (temporary file + rename) so that processes
 * starting together (`--workers`, `--jobs`) never load a half-written library.
 *
 * @module
 */

/** The compiler flags (OpenMP threads, code for this CPU). */
export const NATIVE_CFLAGS: readonly string[] = [
  "-O3",
  "-march=native",
  "-fopenmp",
  "-fPIC",
  "-shared",
];

const SOURCE_URL = new URL("./native/kernels.c", import.meta.url);

/** A built (or cached) kernel library. */
export interface NativeLibrary {
  /** Path of the shared library. */
  path: string;
  /** The compiler that built it, e.g. `gcc (Debian 12.2.0-14+deb12u1) 12.2.0`. */
  compiler: string;
  /** Whether this call compiled it (false: it was in the cache). */
  built: boolean;
}

/** Why no library could be built (one line). */
export interface NativeBuildFailure {
  reason: string;
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The folder that holds built kernel libraries: `$SEITPP_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/seitpp`, else `$HOME/.cache/seitpp`, else `$TMPDIR/seitpp-cache`.
 */
export function nativeCacheDir(): string {
  const own = env("SEITPP_CACHE_DIR");
  if (own !== undefined) return own;
  const xdg = env("XDG_CACHE_HOME");
  if (xdg !== undefined) return `${xdg}/seitpp`;
  const home = env("HOME");
  if (home !== undefined) return `${home}/.cache/seitpp`;
  return `${env("TMPDIR") ?? "/tmp"}/seitpp-cache`;
}

/** Compilers tried in order: `SEITPP_CC` alone when set, else cc, gcc, clang. */
export function compilerCandidates(): string[] {
  const cc = env("SEITPP_CC");
  return cc !== undefined ? [cc] : ["cc", "gcc", "clang"];
}

async function compilerVersion(cc: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(cc, {
      args: ["--version"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).split("\n")[0].trim() || cc;
  } catch {
    return undefined;
  }
}

/** The CPU's model and flags (code is built with -march=native, so they are part of the key). */
function cpuKey(): string {
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    const model = info.match(/^model name\s*:(.*)$/m)?.[1] ?? "";
    const flags = info.match(/^flags\s*:(.*)$/m)?.[1] ?? "";
    return `${model}|${flags}`;
  } catch {
    return `${Deno.build.arch}-${Deno.build.os}`;
  }
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function permitted(name: "run" | "read" | "write" | "env"): boolean {
  try {
    return Deno.permissions.querySync({ name }).state === "granted";
  } catch {
    return false;
  }
}

function libraryExtension(): string {
  return Deno.build.os === "darwin" ? "dylib" : Deno.build.os === "windows" ? "dll" : "so";
}

/**
 * The kernel library for this source, compiler and flags: from the cache, else compiled now
 * (one line on stderr says so). Never throws for a missing compiler or a failed compile: it
 * returns why instead, so that the caller can run the JS kernels.
 *
 * @param options `quiet`: do not print the "built" line
 * @returns the library, or why there is none
 */
export async function buildNativeKernels(
  options: { quiet?: boolean } = {},
): Promise<NativeLibrary | NativeBuildFailure> {
  for (const p of ["run", "read", "write"] as const) {
    if (!permitted(p)) {
      return { reason: `building them needs --allow-${p} (or -A)` };
    }
  }
  let source: string;
  try {
    source = await Deno.readTextFile(SOURCE_URL);
  } catch (e) {
    return { reason: `cannot read ${SOURCE_URL.href}: ${(e as Error).message}` };
  }
  let cc: string | undefined;
  let version: string | undefined;
  const tried = compilerCandidates();
  for (const candidate of tried) {
    version = await compilerVersion(candidate);
    if (version !== undefined) {
      cc = candidate;
      break;
    }
  }
  if (cc === undefined || version === undefined) {
    return {
      reason: `no C compiler found (tried ${tried.join(", ")}${
        env("SEITPP_CC") !== undefined ? " from SEITPP_CC" : ""
      }; on Debian/Ubuntu: apt-get install gcc)`,
    };
  }
  const key = await sha256(
    [source, cc, version, NATIVE_CFLAGS.join(" "), cpuKey()].join("\n\0"),
  );
  const dir = nativeCacheDir();
  const path = `${dir}/kernels-${key.slice(0, 16)}.${libraryExtension()}`;
  if (exists(path)) return { path, compiler: version, built: false };
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    return { reason: `cannot create the cache folder ${dir}: ${(e as Error).message}` };
  }
  const tag = `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const src = `${dir}/kernels-${key.slice(0, 16)}.${tag}.c`;
  const tmp = `${path}.${tag}.tmp`;
  const started = performance.now();
  try {
    await Deno.writeTextFile(src, source);
    const out = await new Deno.Command(cc, {
      args: [...NATIVE_CFLAGS, "-o", tmp, src, "-lm"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n")
        .find((l) => /error/i.test(l)) ?? `exit code ${out.code}`;
      return { reason: `${cc} failed to compile ${SOURCE_URL.pathname}: ${err}` };
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    return { reason: `building with ${cc} failed: ${(e as Error).message}` };
  } finally {
    for (const f of [src, tmp]) {
      try {
        Deno.removeSync(f);
      } catch {
        // already renamed or never written
      }
    }
  }
  if (!options.quiet) {
    const s = ((performance.now() - started) / 1000).toFixed(1);
    console.error(`seitpp: built the native kernels with ${version} in ${s} s: ${path}`);
  }
  return { path, compiler: version, built: true };
}
