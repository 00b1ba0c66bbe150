/**
 * A training task's new run folder that does not outlive a failed start: when the run
 * fails before its first checkpoint (a bad `--init`, a plan that does not fit, NaN at the
 * first steps...), the folder it made is removed again, and so is the runs folder when
 * this call made it and it is empty. A folder that existed before is never removed, and
 * a run with a checkpoint on disk is always kept (it can be resumed).
 *
 * @module
 */
import { CHECKPOINT_JSON, createRunDir } from "@lib/train";

/**
 * @param path a file or folder
 * @returns whether it exists
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Make a new run folder in `outDir`, run `body` in it, and remove it again when `body`
 * throws before a checkpoint was saved there.
 *
 * @param outDir the runs folder (`--out`)
 * @param name the run's label (`pretrain` / `finetune`)
 * @param body the run
 * @returns what `body` returns
 * @throws whatever `body` throws (after the clean-up)
 */
export async function inNewRunFolder<T>(
  outDir: string,
  name: string,
  body: (runDir: string) => Promise<T>,
): Promise<T> {
  const outExisted = await exists(outDir);
  const runDir = await createRunDir(outDir, name);
  try {
    return await body(runDir);
  } catch (e) {
    if (await removeFailedStart(runDir, false)) {
      // only an empty runs folder this call made (a non-recursive remove fails otherwise)
      if (!outExisted) await Deno.remove(outDir).catch(() => {});
    }
    throw e;
  }
}

/**
 * After a run failed: remove its folder when this process made it (`existed` false) and
 * no checkpoint was saved there.
 *
 * @param runDir the run folder
 * @param existed whether it existed before the run (then it is never removed)
 * @returns whether it was removed
 */
export async function removeFailedStart(runDir: string, existed: boolean): Promise<boolean> {
  if (existed || await exists(`${runDir}/${CHECKPOINT_JSON}`)) return false;
  await Deno.remove(runDir, { recursive: true }).catch(() => {});
  return true;
}
