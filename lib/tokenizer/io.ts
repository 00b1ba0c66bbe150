/**
 * Saving and loading tokenizers: weights as safetensors, architecture as JSON.
 *
 * A tokenizer folder holds:
 * ```
 * tokenizer.json          format tag, resolved architecture, codebook size, free-form info
 * tokenizer.safetensors   enc.*, dec.* and codebook [K, d] (the whole tokenizer)
 * decoder.safetensors     dec.* and codebook only (what data/ ships to decode tokens)
 * ```
 * Either safetensors file may be absent; {@linkcode loadDecoder} takes whichever is there.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  type HostTensor,
  readSafetensorsFile,
  writeFileAtomic,
  writeSafetensorsFile,
} from "../io/mod.ts";
import {
  type ResolvedTokenizerConfig,
  resolveTokenizerConfig,
  type TokenizerConfig,
} from "./config.ts";
import { newVariable, tokenizerParamShapes, VqDecoder, VqTokenizer } from "./model.ts";

/** The format tag of `tokenizer.json`. */
export const TOKENIZER_FORMAT = "seitpp-vq-tokenizer-1";
/** The architecture file of a tokenizer folder. */
export const TOKENIZER_JSON = "tokenizer.json";
/** The full weights file of a tokenizer folder. */
export const TOKENIZER_WEIGHTS = "tokenizer.safetensors";
/** The decoder-only weights file of a tokenizer folder. */
export const DECODER_WEIGHTS = "decoder.safetensors";

/** The content of `tokenizer.json`. */
export interface TokenizerJson {
  /** Always {@linkcode TOKENIZER_FORMAT}. */
  format: typeof TOKENIZER_FORMAT;
  /** The resolved architecture. */
  config: ResolvedTokenizerConfig;
  /** Rows of the saved codebook (after pruning, usually below `config.codebookSize`). */
  codebookSize: number;
  /** Anything worth keeping with the weights: training recipe, metrics, provenance. */
  info: Record<string, unknown>;
}

async function hostOf(t: tf.Tensor): Promise<HostTensor<"float32">> {
  return { dtype: "float32", shape: [...t.shape], data: (await t.data()) as Float32Array };
}

/**
 * The tensors of a decoder: `dec.*` and `codebook`, copied to the host.
 *
 * @param decoder the decoder
 * @returns host tensors by name
 */
export async function decoderTensors(decoder: VqDecoder): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  for (const [k, v] of decoder.params) out.set(k, await hostOf(v));
  out.set("codebook", await hostOf(decoder.codebook));
  return out;
}

/**
 * The tensors of a tokenizer: `enc.*`, `dec.*` and `codebook`, copied to the host.
 *
 * @param tok the tokenizer
 * @returns host tensors by name
 */
export async function tokenizerTensors(tok: VqTokenizer): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  for (const [k, v] of tok.encoderParams) out.set(k, await hostOf(v));
  for (const [k, v] of await decoderTensors(tok.decoder)) out.set(k, v);
  return out;
}

function toVariable(t: HostTensor, name: string, shape: number[], source: string): tf.Variable {
  if (t.dtype !== "float32") {
    throw new TypeError(
      `Cannot load "${name}" from "${source}": dtype ${t.dtype}, expected float32`,
    );
  }
  if (t.shape.join() !== shape.join()) {
    throw new TypeError(
      `Cannot load "${name}" from "${source}": shape [${t.shape}], expected [${shape}]`,
    );
  }
  return newVariable(t.data as Float32Array, shape);
}

function buildParams(
  config: ResolvedTokenizerConfig,
  tensors: ReadonlyMap<string, HostTensor>,
  prefix: "enc." | "dec.",
  source: string,
): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  try {
    for (const { name, shape } of tokenizerParamShapes(config)) {
      if (!name.startsWith(prefix)) continue;
      const t = tensors.get(name);
      if (t === undefined) throw new TypeError(`Cannot load "${source}": no tensor "${name}"`);
      out.set(name, toVariable(t, name, shape, source));
    }
  } catch (e) {
    for (const v of out.values()) v.dispose();
    throw e;
  }
  return out;
}

function buildCodebook(
  config: ResolvedTokenizerConfig,
  tensors: ReadonlyMap<string, HostTensor>,
  source: string,
): tf.Tensor2D {
  const t = tensors.get("codebook");
  if (t === undefined) throw new TypeError(`Cannot load "${source}": no tensor "codebook"`);
  if (t.dtype !== "float32" || t.shape.length !== 2 || t.shape[1] !== config.codeDim) {
    throw new TypeError(
      `Cannot load "codebook" from "${source}": ${t.dtype} [${t.shape}], expected float32 [K, ${config.codeDim}]`,
    );
  }
  return tf.tensor2d(t.data as Float32Array, [t.shape[0], t.shape[1]]);
}

/**
 * A decoder from host tensors (`dec.*` + `codebook`; other names are ignored).
 *
 * @param config resolved architecture
 * @param tensors host tensors by name
 * @param source file name for messages
 * @returns a new decoder the caller owns
 * @throws {TypeError} for a missing tensor or a wrong shape/dtype (named)
 */
export function decoderFromTensors(
  config: ResolvedTokenizerConfig,
  tensors: ReadonlyMap<string, HostTensor>,
  source = "<tensors>",
): VqDecoder {
  const params = buildParams(config, tensors, "dec.", source);
  let codebook: tf.Tensor2D;
  try {
    codebook = buildCodebook(config, tensors, source);
  } catch (e) {
    for (const v of params.values()) v.dispose();
    throw e;
  }
  return new VqDecoder(config, params, codebook);
}

/**
 * A tokenizer from host tensors (`enc.*`, `dec.*`, `codebook`; other names are ignored).
 *
 * @param config resolved architecture
 * @param tensors host tensors by name
 * @param source file name for messages
 * @returns a new tokenizer the caller owns
 * @throws {TypeError} for a missing tensor or a wrong shape/dtype (named)
 */
export function tokenizerFromTensors(
  config: ResolvedTokenizerConfig,
  tensors: ReadonlyMap<string, HostTensor>,
  source = "<tensors>",
): VqTokenizer {
  const decoder = decoderFromTensors(config, tensors, source);
  let enc: Map<string, tf.Variable>;
  try {
    enc = buildParams(config, tensors, "enc.", source);
  } catch (e) {
    decoder.dispose();
    throw e;
  }
  return new VqTokenizer(config, enc, decoder);
}

async function writeJson(dir: string, json: TokenizerJson): Promise<void> {
  await writeFileAtomic(
    `${dir}/${TOKENIZER_JSON}`,
    new TextEncoder().encode(JSON.stringify(json, null, 2) + "\n"),
  );
}

/**
 * Save a whole tokenizer: `tokenizer.safetensors` + `tokenizer.json` (atomic writes).
 *
 * @param dir an existing folder
 * @param tok the tokenizer
 * @param info free-form JSON stored in `tokenizer.json` (training recipe, metrics...)
 */
export async function saveTokenizer(
  dir: string,
  tok: VqTokenizer,
  info: Record<string, unknown> = {},
): Promise<void> {
  await writeSafetensorsFile(`${dir}/${TOKENIZER_WEIGHTS}`, await tokenizerTensors(tok), {
    format: TOKENIZER_FORMAT,
  });
  await writeJson(dir, {
    format: TOKENIZER_FORMAT,
    config: tok.config,
    codebookSize: tok.decoder.codebookSize,
    info,
  });
}

/**
 * Save only what decoding needs: `decoder.safetensors` (dec.* + codebook) + `tokenizer.json`.
 *
 * @param dir an existing folder
 * @param decoder the decoder
 * @param info free-form JSON stored in `tokenizer.json`
 */
export async function saveDecoder(
  dir: string,
  decoder: VqDecoder,
  info: Record<string, unknown> = {},
): Promise<void> {
  await writeSafetensorsFile(`${dir}/${DECODER_WEIGHTS}`, await decoderTensors(decoder), {
    format: TOKENIZER_FORMAT,
  });
  await writeJson(dir, {
    format: TOKENIZER_FORMAT,
    config: decoder.config,
    codebookSize: decoder.codebookSize,
    info,
  });
}

/**
 * Read and validate `tokenizer.json` of a tokenizer folder.
 *
 * @param dir the folder
 * @returns its content, the config re-resolved (so it is validated)
 * @throws {Deno.errors.NotFound} when the file is missing
 * @throws {SyntaxError} for bad JSON or another format tag (the message names the file)
 * @throws {TypeError | RangeError} for an invalid config
 */
export async function readTokenizerJson(dir: string): Promise<TokenizerJson> {
  const path = `${dir}/${TOKENIZER_JSON}`;
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof SyntaxError) throw new SyntaxError(`Cannot parse "${path}": ${e.message}`);
    throw e;
  }
  const j = raw as Partial<TokenizerJson>;
  if (j === null || typeof j !== "object" || j.format !== TOKENIZER_FORMAT) {
    throw new SyntaxError(`Cannot load "${path}": not a ${TOKENIZER_FORMAT} file`);
  }
  const config = resolveTokenizerConfig(j.config as TokenizerConfig);
  if (!Number.isInteger(j.codebookSize) || (j.codebookSize as number) < 1) {
    throw new SyntaxError(`Cannot load "${path}": bad codebookSize ${j.codebookSize}`);
  }
  return {
    format: TOKENIZER_FORMAT,
    config,
    codebookSize: j.codebookSize as number,
    info: (j.info ?? {}) as Record<string, unknown>,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Load a whole tokenizer from a folder (`tokenizer.json` + `tokenizer.safetensors`).
 *
 * @param dir the folder
 * @returns a new tokenizer the caller owns
 * @throws {Deno.errors.NotFound} when a file is missing
 * @throws {SyntaxError | TypeError} for malformed files (named in the message)
 */
export async function loadTokenizer(dir: string): Promise<VqTokenizer> {
  const json = await readTokenizerJson(dir);
  const path = `${dir}/${TOKENIZER_WEIGHTS}`;
  const { tensors } = await readSafetensorsFile(path);
  return tokenizerFromTensors(json.config, tensors, path);
}

/**
 * Load the decoder of a folder: `decoder.safetensors` when present, else the decoder part
 * of `tokenizer.safetensors`.
 *
 * @param dir the folder (e.g. `data/fmnist8`)
 * @returns a new decoder the caller owns
 * @throws {Deno.errors.NotFound} when neither weights file (or the JSON) exists
 * @throws {SyntaxError | TypeError} for malformed files (named in the message)
 *
 * @example
 * ```ts ignore
 * import { loadDecoder } from "@lib/tokenizer";
 * const dec = await loadDecoder("data/fmnist8");
 * ```
 */
export async function loadDecoder(dir: string): Promise<VqDecoder> {
  const json = await readTokenizerJson(dir);
  let path = `${dir}/${DECODER_WEIGHTS}`;
  if (!(await exists(path))) {
    const full = `${dir}/${TOKENIZER_WEIGHTS}`;
    if (!(await exists(full))) {
      throw new Deno.errors.NotFound(
        `Cannot load a decoder from "${dir}": neither ${DECODER_WEIGHTS} nor ${TOKENIZER_WEIGHTS} exists`,
      );
    }
    path = full;
  }
  const { tensors } = await readSafetensorsFile(path);
  return decoderFromTensors(json.config, tensors, path);
}
