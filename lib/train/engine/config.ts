/**
 * Typed, checked configuration: defaults, JSON config files and `--key=value` overrides.
 *
 * A config is plain JSON (numbers, strings, booleans, null, arrays, nested objects).
 * The type of every key is the type of its default value; keys whose default is `null`
 * or that take a fixed set of values are declared in a {@linkcode ConfigSchema}.
 * Unknown keys and values of the wrong type are refused with the key named, so a typo
 * never silently trains the wrong thing.
 *
 * @module
 */

/** A JSON value as configs hold them. */
export type ConfigValue =
  | number
  | string
  | boolean
  | null
  | ConfigValue[]
  | { [key: string]: ConfigValue };

/** The primitive kinds a nullable key may hold when not null. */
export type ConfigKind = "number" | "integer" | "string" | "boolean" | "number[]";

/** What the default values alone cannot say about a config. */
export interface ConfigSchema {
  /** Dotted keys that may be `null`, with the kind of their non-null values. */
  nullable?: Record<string, ConfigKind>;
  /** Dotted keys restricted to a set of values. */
  choices?: Record<string, readonly (string | number | boolean | null)[]>;
  /** Dotted keys whose numbers must be integers. */
  integers?: readonly string[];
  /** Dotted keys of objects that accept any keys (free-form maps). */
  open?: readonly string[];
}

type Obj = { [key: string]: ConfigValue };

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function describe(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function knownKeys(obj: Obj, prefix: string): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isObj(v) && Object.keys(v).length > 0) out.push(...knownKeys(v, key));
    else out.push(key);
  }
  return out;
}

function checkKind(key: string, kind: ConfigKind, v: unknown, source: string): void {
  const bad = () =>
    new TypeError(`Config key "${key}"${source}: expected ${kind}, got ${describe(v)}`);
  switch (kind) {
    case "number":
      if (typeof v !== "number" || !Number.isFinite(v)) throw bad();
      return;
    case "integer":
      if (typeof v !== "number" || !Number.isInteger(v)) throw bad();
      return;
    case "string":
      if (typeof v !== "string") throw bad();
      return;
    case "boolean":
      if (typeof v !== "boolean") throw bad();
      return;
    case "number[]":
      if (!Array.isArray(v) || v.some((x) => typeof x !== "number" || !Number.isFinite(x))) {
        throw bad();
      }
  }
}

function kindOfDefault(key: string, def: unknown, schema: ConfigSchema): ConfigKind | "any" {
  if (schema.nullable?.[key]) return schema.nullable[key];
  if (schema.integers?.includes(key)) return "integer";
  if (typeof def === "number") return "number";
  if (typeof def === "string") return "string";
  if (typeof def === "boolean") return "boolean";
  if (Array.isArray(def) && def.every((x) => typeof x === "number")) return "number[]";
  return "any";
}

/**
 * Check one value against the key's default and the schema.
 * @throws {TypeError} for a wrong type, {@linkcode RangeError} for a value not in `choices`
 */
function checkValue(
  key: string,
  def: unknown,
  v: unknown,
  schema: ConfigSchema,
  source: string,
): void {
  const choices = schema.choices?.[key];
  if (choices !== undefined) {
    if (!choices.includes(v as string)) {
      throw new RangeError(
        `Config key "${key}"${source}: ${describe(v)} is not one of ${
          choices.map((c) => describe(c)).join(", ")
        }`,
      );
    }
    return;
  }
  const nullable = schema.nullable?.[key] !== undefined || def === null;
  if (v === null) {
    if (!nullable) {
      throw new TypeError(`Config key "${key}"${source}: expected ${kindOf(def)}, got null`);
    }
    return;
  }
  const kind = kindOfDefault(key, def, schema);
  if (kind === "any") {
    if (def === null) {
      throw new TypeError(
        `Config key "${key}"${source}: its type is undeclared (null default without a schema entry)`,
      );
    }
    if (kindOf(def) !== kindOf(v)) {
      throw new TypeError(
        `Config key "${key}"${source}: expected ${kindOf(def)}, got ${describe(v)}`,
      );
    }
    return;
  }
  checkKind(key, kind, v, source);
  if (kind === "number[]" && Array.isArray(def) && def.length !== (v as unknown[]).length) {
    throw new TypeError(
      `Config key "${key}"${source}: expected ${def.length} numbers, got ${describe(v)}`,
    );
  }
}

/**
 * Deep-merge a partial config (e.g. a JSON config file) into a full one, checking every
 * key and value against the full config's defaults and the schema.
 *
 * @param base the full config (not modified)
 * @param partial the values to set (nested objects merge; other values replace)
 * @param schema nullable keys, choices, integers, open maps
 * @param source where the values came from, for messages (e.g. `configs/x.json`)
 * @returns a new config
 * @throws {TypeError} for an unknown key (named, with the known keys) or a value of the wrong type
 * @throws {RangeError} for a value outside a key's choices
 *
 * @example
 * ```ts
 * import { mergeConfig } from "@lib/train";
 * const c = mergeConfig({ lr: 1e-3, opt: { betas: [0.9, 0.999] } }, { opt: { betas: [0.9, 0.95] } });
 * console.assert(c.opt.betas[1] === 0.95);
 * ```
 */
export function mergeConfig<T extends object>(
  base: T,
  partial: unknown,
  schema: ConfigSchema = {},
  source = "",
): T {
  const where = source ? ` (in ${source})` : "";
  const walk = (b: Obj, p: unknown, prefix: string): Obj => {
    if (!isObj(p)) {
      throw new TypeError(
        `Config${prefix ? ` key "${prefix}"` : ""}${where}: expected an object, got ${describe(p)}`,
      );
    }
    const out: Obj = structuredClone(b);
    const open = prefix !== "" && schema.open?.includes(prefix);
    for (const [k, v] of Object.entries(p)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (!(k in b)) {
        if (open) {
          out[k] = structuredClone(v as ConfigValue);
          continue;
        }
        throw new TypeError(
          `Unknown config key "${key}"${where}; known keys: ${knownKeys(b, prefix).join(", ")}`,
        );
      }
      const def = b[k];
      if (isObj(def) && !schema.nullable?.[key]) {
        out[k] = walk(def, v, key);
      } else {
        checkValue(key, def, v, schema, where);
        out[k] = structuredClone(v as ConfigValue);
      }
    }
    return out;
  };
  return walk(base as unknown as Obj, partial, "") as unknown as T;
}

/**
 * Parse the text of a `--key=value` override into the type the key's default has:
 * numbers (`1e-3`), booleans (`true`/`false`), `null`, JSON arrays (`[0.9,0.95]`) and
 * strings (as written).
 *
 * @param base the full config (gives the key's type)
 * @param key dotted key, e.g. `model.depth`
 * @param text the value as written on the command line
 * @param schema nullable keys, choices, integers
 * @returns the typed value
 * @throws {TypeError} for an unknown key or a value that does not parse as the key's type
 */
export function parseOverrideValue(
  base: object,
  key: string,
  text: string,
  schema: ConfigSchema = {},
): ConfigValue {
  let node: unknown = base;
  const parts = key.split(".");
  for (let i = 0; i < parts.length; i++) {
    if (!isObj(node) || !(parts[i] in node)) {
      const prefix = parts.slice(0, i).join(".");
      const open = prefix !== "" && schema.open?.includes(prefix) && isObj(node);
      if (open) {
        try {
          return JSON.parse(text);
        } catch {
          return text;
        }
      }
      throw new TypeError(
        `Unknown config key "${key}"; known keys: ${knownKeys(base as Obj, "").join(", ")}`,
      );
    }
    node = (node as Obj)[parts[i]];
  }
  const def = node;
  if (text === "null") return null;
  const kind = schema.choices?.[key] !== undefined
    ? kindOf(schema.choices[key].find((c) => c !== null) ?? "")
    : kindOfDefault(key, def, schema);
  const bad = (want: string) =>
    new TypeError(`Config key "${key}": expected ${want}, got ${JSON.stringify(text)}`);
  switch (kind) {
    case "number":
    case "integer": {
      const n = text.trim() === "" ? NaN : Number(text);
      if (!Number.isFinite(n)) throw bad(kind);
      return n;
    }
    case "boolean":
      if (text === "true") return true;
      if (text === "false") return false;
      throw bad("true or false");
    case "string":
      return text;
    default:
      try {
        return JSON.parse(text);
      } catch {
        throw bad(`JSON (${kindOf(def)})`);
      }
  }
}

/**
 * Apply `--key=value` overrides to a config, each parsed by {@linkcode parseOverrideValue}
 * and checked as {@linkcode mergeConfig} checks.
 *
 * @param base the full config (not modified)
 * @param overrides `[key, text]` pairs in order
 * @param schema nullable keys, choices, integers
 * @returns a new config
 * @throws {TypeError} for an unknown key or a wrong type
 * @throws {RangeError} for a value outside a key's choices
 *
 * @example
 * ```ts
 * import { applyOverrides } from "@lib/train";
 * const c = applyOverrides({ lr: 1e-3, model: { depth: 4 } }, [["model.depth", "2"]]);
 * console.assert(c.model.depth === 2);
 * ```
 */
export function applyOverrides<T extends object>(
  base: T,
  overrides: readonly (readonly [string, string])[],
  schema: ConfigSchema = {},
): T {
  let out = base;
  for (const [key, text] of overrides) {
    const value = parseOverrideValue(out, key, text, schema);
    const partial: Obj = {};
    let node = partial;
    const parts = key.split(".");
    parts.slice(0, -1).forEach((p) => {
      node[p] = {};
      node = node[p] as Obj;
    });
    node[parts[parts.length - 1]] = value;
    out = mergeConfig(out, partial, schema, `--${key}`);
  }
  return out;
}

/** What {@linkcode parseTaskArgs} found on a task's command line. */
export interface TaskArgs {
  /** `--config <file>`: a JSON config file (partial config). */
  config?: string;
  /** `--backend <name>`. */
  backend?: string;
  /** `--resume <run dir>`: continue that run from its checkpoint. */
  resume?: string;
  /** `--data <file>`: the official-format training data file. */
  data?: string;
  /** `--out <dir>`: where run folders go. */
  out?: string;
  /** `--init <run dir | weights file>`: initial weights (fine-tuning). */
  init?: string;
  /** `--help` / `-h`. */
  help: boolean;
  /** `--force`: resume with overrides that change the run's data order or schedule. */
  force?: boolean;
  /** Every other `--key=value`, in order. */
  overrides: [string, string][];
}

const TASK_FLAGS = ["config", "backend", "resume", "data", "out", "init"] as const;

/**
 * Split a task's command line into its flags and `--key=value` config overrides.
 * The flags `--config`, `--backend`, `--resume`, `--data`, `--out`, `--init` take a value
 * as `--flag=value` or `--flag value`; `--force` and `--help` take none; config overrides
 * must use `--key=value`.
 *
 * @param args `Deno.args`
 * @returns the flags and overrides
 * @throws {SyntaxError} for a positional argument, a flag without a value, or an
 *   override without `=`
 *
 * @example
 * ```ts
 * import { parseTaskArgs } from "@lib/train";
 * const a = parseTaskArgs(["--backend", "cpu", "--epochs=2", "--model.depth=2"]);
 * console.assert(a.backend === "cpu" && a.overrides.length === 2);
 * ```
 */
export function parseTaskArgs(args: readonly string[]): TaskArgs {
  const out: TaskArgs = { help: false, overrides: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--help" || a === "-h") {
      out.help = true;
      continue;
    }
    if (a === "--force") {
      out.force = true;
      continue;
    }
    if (!a.startsWith("--")) {
      throw new SyntaxError(`Unexpected argument ${JSON.stringify(a)}: options are --key=value`);
    }
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if ((TASK_FLAGS as readonly string[]).includes(name)) {
      let value: string | undefined = eq < 0 ? args[++i] : a.slice(eq + 1);
      if (value === undefined || value === "" || (eq < 0 && value.startsWith("--"))) {
        value = undefined;
      }
      if (value === undefined) throw new SyntaxError(`Option --${name} needs a value`);
      out[name as (typeof TASK_FLAGS)[number]] = value;
      continue;
    }
    if (eq < 0) {
      throw new SyntaxError(
        `Config override ${JSON.stringify(a)} needs a value: --${name}=<value>`,
      );
    }
    if (name === "") throw new SyntaxError(`Config override ${JSON.stringify(a)} has no key`);
    out.overrides.push([name, a.slice(eq + 1)]);
  }
  return out;
}

/**
 * Read a JSON config file.
 * @param path file path
 * @returns the parsed JSON
 * @throws {SyntaxError} for invalid JSON, naming the file
 */
export async function readConfigFile(path: string): Promise<unknown> {
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot parse config file "${path}": ${(e as Error).message}`);
  }
}

/**
 * Run-config keys added after runs were first written, with the value those runs used
 * implicitly: a run folder from before data-parallel training trained on one thread.
 */
export const ADDED_RUN_KEYS: Readonly<Record<string, ConfigValue>> = { workers: 1 };

/**
 * A stored run config with the {@linkcode ADDED_RUN_KEYS} it lacks filled in, so that an
 * older run folder resumes (or matches its grid spec) as the run it was.
 *
 * @param config a run's stored config (other values are returned as they are)
 * @param only when given, fill only the keys this config has (e.g. the spec it is compared with)
 * @returns a new object with the added keys, or `config` itself when it is not an object
 */
export function withAddedRunKeys<T>(config: T, only?: object): T {
  if (!isObj(config)) return config;
  const out: Obj = { ...config };
  for (const [k, v] of Object.entries(ADDED_RUN_KEYS)) {
    if (!(k in out) && (only === undefined || k in only)) out[k] = v;
  }
  return out as T;
}
