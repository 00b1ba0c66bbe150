/**
 * Path arguments of the tasks are the caller's: `deno task` runs every task in the project
 * folder, but sets `INIT_CWD` to the folder the user typed the command in. A relative path
 * given on the command line is resolved against that folder; absolute paths, and every
 * path when `INIT_CWD` is unset or is the working folder, are left as they are.
 *
 * `deno task` sets `INIT_CWD` only when it is unset, so every process below one `deno task`
 * (a test run, a grid's workers) inherits the first one's folder: a subprocess started with
 * relative path arguments from a `deno task` typed outside the project root resolves them
 * there. Pass absolute paths to subprocesses, or remove `INIT_CWD` from their environment.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";

/**
 * Resolve a path argument against the caller's working folder (`INIT_CWD`).
 *
 * @param path a path as the user typed it (`undefined` passes through)
 * @returns the path to open from the task's working folder
 *
 * @example
 * ```ts
 * import { callerPath } from "./_paths.ts";
 * console.assert(callerPath("/abs/x.ckpt") === "/abs/x.ckpt");
 * ```
 */
export function callerPath(path: string): string;
export function callerPath(path: string | undefined): string | undefined;
export function callerPath(path: string | undefined): string | undefined {
  if (path === undefined || path === "" || isAbsolute(path)) return path;
  let base: string | undefined;
  try {
    base = Deno.env.get("INIT_CWD");
  } catch {
    return path; // no env permission
  }
  if (base === undefined || base === "" || base === Deno.cwd()) return path;
  return join(base, path);
}

/** The path flags every training-style task takes (`TaskArgs` of `@lib/train`). */
export interface TaskPathArgs {
  /** `--config` */
  config?: string;
  /** `--resume` */
  resume?: string;
  /** `--data` */
  data?: string;
  /** `--out` */
  out?: string;
  /** `--init` (`"null"` is not a path) */
  init?: string;
}

/**
 * Resolve the path flags of parsed task arguments against the caller's folder.
 *
 * @param args parsed arguments (`parseTaskArgs` of `@lib/train`)
 * @returns a copy with `config`, `resume`, `data`, `out` and `init` resolved by
 *   {@linkcode callerPath}
 */
export function callerTaskArgs<T extends TaskPathArgs>(args: T): T {
  return {
    ...args,
    config: callerPath(args.config),
    resume: callerPath(args.resume),
    data: callerPath(args.data),
    out: callerPath(args.out),
    init: args.init === "null" ? args.init : callerPath(args.init),
  };
}
