/**
 * Jupyter display plumbing for Deno's kernel: the display symbol, the mimebundle type,
 * kernel detection and a `display` that falls back to the terminal outside the kernel.
 *
 * @module
 */

/**
 * The symbol Deno's Jupyter kernel looks up on an object to get its rich representation
 * (`Symbol.for("Jupyter.display")`, the same value as `Deno.jupyter.$display`).
 */
export const $display: unique symbol = Symbol.for("Jupyter.display") as never;

/**
 * A Jupyter mimebundle: mime type to payload. Text types are strings, JSON types are objects,
 * binary types (`image/png`) are base64 strings, as the Jupyter messaging spec requires.
 */
export type MimeBundle = Record<string, string | object>;

/** An object that renders itself in Deno's Jupyter kernel and as text elsewhere. */
export interface Displayable {
  /** The rich representation, called by the kernel when the object is displayed. */
  [$display](): MimeBundle;
  /** Plain-text representation used outside the kernel. */
  toString(): string;
}

/**
 * Whether this code runs inside Deno's Jupyter kernel (`deno jupyter --kernel`).
 *
 * @returns true when `Deno.jupyter` is available; outside the kernel reading it throws and
 *   this returns false.
 * @example
 * ```ts
 * import { inJupyter } from "@lib/report";
 * console.log(inJupyter()); // false under `deno run` / `deno test`
 * ```
 */
export function inJupyter(): boolean {
  try {
    return typeof Deno.jupyter?.display === "function";
  } catch {
    return false;
  }
}

/** Options for {@linkcode display}. */
export interface DisplayOptions {
  /**
   * Jupyter display id: a later `display(obj, { displayId, update: true })` replaces the
   * output in place (also across cells).
   */
  displayId?: string;
  /** Send `update_display_data` for `displayId` instead of a new output. @default false */
  update?: boolean;
}

/**
 * Shows an object: in the kernel as a `display_data` (or `update_display_data`) message with
 * the object's mimebundle; outside the kernel its `text/plain` (or `String(obj)`) goes to
 * stdout.
 *
 * @param obj A {@linkcode Displayable}, a raw {@linkcode MimeBundle} is NOT accepted (wrap it
 *   with {@linkcode bundleDisplay}); any other value is shown as Deno's kernel formats it.
 * @param options Display id and update flag.
 * @returns Resolves once the message was handed to the kernel (or the text was written).
 * @throws TypeError when `update` is set without a `displayId`.
 */
export async function display(obj: unknown, options: DisplayOptions = {}): Promise<void> {
  if (options.update && options.displayId === undefined) {
    throw new TypeError("Cannot update a display without a displayId");
  }
  if (inJupyter()) {
    const opts: Deno.jupyter.DisplayOptions = {};
    if (options.displayId !== undefined) opts.display_id = options.displayId;
    if (options.update) opts.update = true;
    await Deno.jupyter.display(obj, opts);
    return;
  }
  console.log(plainText(obj));
}

/**
 * The `text/plain` view of a value: the displayable's bundle entry, else `String(value)`.
 *
 * @param obj Any value.
 * @returns Text for a terminal.
 */
export function plainText(obj: unknown): string {
  if (obj !== null && typeof obj === "object" && $display in obj) {
    const text = (obj as Displayable)[$display]()["text/plain"];
    if (typeof text === "string") return text;
  }
  return String(obj);
}

/**
 * Wraps a ready mimebundle as a displayable object.
 *
 * @param bundle The mimebundle; should contain `text/plain` for the terminal fallback.
 * @returns A {@linkcode Displayable} returning `bundle`.
 * @example
 * ```ts
 * import { $display, bundleDisplay } from "@lib/report";
 * const d = bundleDisplay({ "text/plain": "hi", "text/html": "<b>hi</b>" });
 * console.log(String(d), Object.keys(d[$display]()));
 * ```
 */
export function bundleDisplay(bundle: MimeBundle): Displayable {
  return {
    [$display]: () => bundle,
    toString: () => typeof bundle["text/plain"] === "string" ? bundle["text/plain"] : "[display]",
  };
}

/**
 * Escapes text for HTML element content and attribute values.
 *
 * @param text Raw text.
 * @returns Text with `& < > " '` escaped.
 */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}
