/**
 * Where the reference parity fixtures live: $SEITPP_PARITY_DIR, else ../shared/parity/public
 * next to the repository. Tests fail (not skip) when they are missing.
 */
const fromEnv = Deno.env.get("SEITPP_PARITY_DIR");

/** Absolute path of the parity fixture folder (no trailing slash). */
export const PARITY_DIR: string = fromEnv ??
  decodeURIComponent(new URL("../../../shared/parity/public", import.meta.url).pathname);

try {
  Deno.statSync(`${PARITY_DIR}/meta.json`);
} catch {
  throw new Error(
    `Parity fixtures not found at ${PARITY_DIR}: set SEITPP_PARITY_DIR to the folder holding meta.json`,
  );
}

/**
 * @param name a file of the fixture folder
 * @returns its absolute path
 */
export function parityPath(name: string): string {
  return `${PARITY_DIR}/${name}`;
}
