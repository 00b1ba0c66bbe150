/**
 * Private helpers for resolving model configs: defaults, unknown-key refusal, type and
 * range checks with messages that name the config and the field.
 *
 * @module
 */

/** A rule for one config field. */
export type FieldRule =
  | { kind: "int"; min: number; max?: number }
  | { kind: "number"; min: number; max: number; minExclusive?: boolean; maxExclusive?: boolean }
  | { kind: "boolean" }
  | { kind: "enum"; values: readonly string[] };

/**
 * Merge `input` over `defaults`, refusing unknown keys and values that break a rule.
 *
 * @param what the config's name for messages, e.g. `MtmConfig`
 * @param input user values (may be undefined)
 * @param defaults every field with its default
 * @param rules a rule per field
 * @returns the merged, checked object (a new plain object)
 * @throws {TypeError} for an unknown key or a value of the wrong type
 * @throws {RangeError} for a value out of range
 */
export function resolveFields<T extends object>(
  what: string,
  input: Partial<T> | undefined,
  defaults: T,
  rules: { [K in keyof T]: FieldRule },
): T {
  const out = { ...defaults } as Record<string, unknown>;
  if (input !== undefined) {
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      throw new TypeError(
        `Cannot resolve ${what}: expected an object, got ${JSON.stringify(input)}`,
      );
    }
    for (const [k, v] of Object.entries(input)) {
      if (!(k in defaults)) {
        throw new TypeError(
          `Cannot resolve ${what}: unknown field "${k}" (known: ${
            Object.keys(defaults).join(", ")
          })`,
        );
      }
      if (v !== undefined) out[k] = v;
    }
  }
  for (const [k, rule] of Object.entries(rules) as [string, FieldRule][]) {
    const v = out[k];
    const bad = (why: string, Err: typeof TypeError | typeof RangeError = RangeError) =>
      new Err(`Cannot resolve ${what}: ${k} = ${JSON.stringify(v)} ${why}`);
    if (rule.kind === "boolean") {
      if (typeof v !== "boolean") throw bad("is not a boolean", TypeError);
    } else if (rule.kind === "enum") {
      if (typeof v !== "string" || !rule.values.includes(v)) {
        throw bad(`is not one of ${rule.values.join(", ")}`, TypeError);
      }
    } else {
      if (typeof v !== "number" || !Number.isFinite(v)) {
        throw bad("is not a finite number", TypeError);
      }
      if (rule.kind === "int") {
        if (!Number.isInteger(v)) throw bad("is not an integer", TypeError);
        if (v < rule.min || (rule.max !== undefined && v > rule.max)) {
          throw bad(`is outside [${rule.min}, ${rule.max ?? "inf"}]`);
        }
      } else {
        const lowOk = rule.minExclusive ? v > rule.min : v >= rule.min;
        const highOk = rule.maxExclusive ? v < rule.max : v <= rule.max;
        if (!lowOk || !highOk) {
          throw bad(
            `is outside ${rule.minExclusive ? "(" : "["}${rule.min}, ${rule.max}${
              rule.maxExclusive ? ")" : "]"
            }`,
          );
        }
      }
    }
  }
  return out as T;
}

/**
 * @param what config name
 * @param cond the condition that must hold
 * @param message what is wrong
 * @throws {RangeError} when cond is false
 */
export function check(what: string, cond: boolean, message: string): void {
  if (!cond) throw new RangeError(`Cannot resolve ${what}: ${message}`);
}

/** Rules shared by probabilities in [0, 1). */
export const PROB: FieldRule = { kind: "number", min: 0, max: 1, maxExclusive: true };
/** Rule for a positive integer. */
export const POS_INT: FieldRule = { kind: "int", min: 1 };
/** Rule for a positive epsilon. */
export const EPS: FieldRule = { kind: "number", min: 0, max: 1, minExclusive: true };

/** The ViT fields every classifier config has (token classifier, pixel ViT). */
export type VitClassifierField =
  | "numClasses"
  | "embedDim"
  | "depth"
  | "numHeads"
  | "mlpRatio"
  | "qkvBias"
  | "normEps"
  | "dropout"
  | "attnDropout"
  | "dropPath"
  | "globalPool"
  | "linearInit"
  | "headInitStd";

/** Rules of {@linkcode VitClassifierField}. */
export const VIT_CLASSIFIER_RULES: { readonly [K in VitClassifierField]: FieldRule } = {
  numClasses: POS_INT,
  embedDim: POS_INT,
  depth: POS_INT,
  numHeads: POS_INT,
  mlpRatio: { kind: "number", min: 0, max: 64, minExclusive: true },
  qkvBias: { kind: "boolean" },
  normEps: EPS,
  dropout: PROB,
  attnDropout: PROB,
  dropPath: PROB,
  globalPool: { kind: "boolean" },
  linearInit: { kind: "enum", values: ["xavier_uniform", "trunc_normal"] },
  headInitStd: { kind: "number", min: 0, max: 10 },
};

/**
 * The shape checks of a ViT: `side` divisible by the patch size, `embedDim` by the
 * heads and by 4 (the 2-D sin-cos table).
 * @param what config name
 * @param c the resolved fields
 * @param sideName what the side is called (`gridSide`, `imageSize`)
 * @param side its value
 * @throws {RangeError} when a check fails
 */
export function checkVitShape(
  what: string,
  c: { patchSize: number; embedDim: number; numHeads: number },
  sideName: string,
  side: number,
): void {
  check(
    what,
    side % c.patchSize === 0,
    `${sideName} ${side} is not divisible by patchSize ${c.patchSize}`,
  );
  check(
    what,
    c.embedDim % c.numHeads === 0,
    `embedDim ${c.embedDim} is not divisible by numHeads ${c.numHeads}`,
  );
  check(what, c.embedDim % 4 === 0, `embedDim ${c.embedDim} is not divisible by 4 (sin-cos table)`);
}
