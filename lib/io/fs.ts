/**
 * Small file-system helpers.
 *
 * @module
 */

/**
 * Write a file atomically: a temporary sibling, then rename over the target.
 *
 * @param path file path
 * @param bytes contents
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
