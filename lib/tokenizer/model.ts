/**
 * The convolutional VQ tokenizer: encoder, cosine codebook, decoder.
 *
 * Pixels -> encoder (3x3 residual blocks, stride-2 space-to-depth stages) -> d-dim vectors
 * on an n x n grid -> L2-normalized and assigned to the nearest L2-normalized codebook row
 * (cosine similarity, as `convertToCodes` does in the reference) -> decoder (the mirror
 * image, depth-to-space stages) -> pixels. The codebook is not trained by gradients: the
 * training loop ({@linkcode trainTokenizer}) moves it by exponential moving averages.
 *
 * Tensor conventions: images enter as `[B, H, W]` or `[B, C, H, W]`; int32 tensors are
 * 0..255 pixel values (tfjs has no uint8 dtype), float32 tensors are 0..1. Decoded images
 * leave as `[B, C, H, W]` float32 in [0, 1]. Codes are `[B, n, n]` int32.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import { gridSize, type ResolvedTokenizerConfig } from "./config.ts";
import { conv3x3, dense, depthToSpace2, heNormal, linear, spaceToDepth2 } from "./_layers.ts";

/** Shape and initialization of one parameter. */
interface ParamSpec {
  name: string;
  shape: number[];
  /** fan-in for He init; 0 for a bias (zeros). */
  fanIn: number;
  gain: number;
}

function convSpecs(name: string, i: number, o: number, gain = 1): ParamSpec[] {
  return [
    { name: `${name}.w`, shape: [3, 3, i, o], fanIn: 9 * i, gain },
    { name: `${name}.b`, shape: [o], fanIn: 0, gain: 0 },
  ];
}

function linearSpecs(name: string, i: number, o: number, gain = 1): ParamSpec[] {
  return [
    { name: `${name}.w`, shape: [i, o], fanIn: i, gain },
    { name: `${name}.b`, shape: [o], fanIn: 0, gain: 0 },
  ];
}

/** Residual blocks start close to the identity (second conv scaled down). */
const RESIDUAL_GAIN = 0.1;

function blockSpecs(prefix: string, width: number, count: number): ParamSpec[] {
  const out: ParamSpec[] = [];
  for (let k = 0; k < count; k++) {
    out.push(...convSpecs(`${prefix}.b${k}.c1`, width, width));
    out.push(...convSpecs(`${prefix}.b${k}.c2`, width, width, RESIDUAL_GAIN));
  }
  return out;
}

/**
 * The parameters of the encoder (`enc.*`) and the decoder (`dec.*`), in a stable order.
 *
 * @param config resolved architecture
 * @returns names and shapes, encoder first
 */
export function tokenizerParamShapes(
  config: ResolvedTokenizerConfig,
): { name: string; shape: number[] }[] {
  return paramSpecs(config).map(({ name, shape }) => ({ name, shape }));
}

function paramSpecs(c: ResolvedTokenizerConfig): ParamSpec[] {
  const L = c.widths.length - 1;
  const w = c.widths;
  const s: ParamSpec[] = [];
  s.push(...convSpecs("enc.stem", c.channels, w[0]));
  for (let l = 0; l <= L; l++) {
    s.push(...blockSpecs(`enc.l${l}`, w[l], c.encoderBlocks[l]));
    if (l < L) s.push(...linearSpecs(`enc.down${l}`, 4 * w[l], w[l + 1]));
  }
  s.push(...linearSpecs("enc.out", w[L], c.codeDim));
  s.push(...convSpecs("dec.in", c.codeDim, w[L]));
  for (let l = L; l >= 0; l--) {
    s.push(...blockSpecs(`dec.l${l}`, w[l], c.decoderBlocks[l]));
    if (l > 0) s.push(...linearSpecs(`dec.up${l}`, w[l], 4 * w[l - 1]));
  }
  s.push(...convSpecs("dec.out", w[0], c.channels, 0.5));
  return s;
}

/**
 * A trainable float32 variable holding a copy of `data` (the temporary tensor it is made
 * from is disposed, so that nothing but the variable stays alive).
 *
 * @param data values, row-major
 * @param shape its shape
 * @returns a new variable the caller owns
 */
export function newVariable(data: Float32Array, shape: number[]): tf.Variable {
  const t = tf.tensor(data, shape, "float32");
  try {
    return tf.variable(t, true);
  } finally {
    t.dispose();
  }
}

function initParams(specs: ParamSpec[], rng: Rng): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const p of specs) {
    const size = p.shape.reduce((a, b) => a * b, 1);
    const data = p.fanIn === 0
      ? new Float32Array(size)
      : heNormal(rng, p.fanIn, size / p.fanIn, p.gain);
    out.set(p.name, newVariable(data, p.shape));
  }
  return out;
}

function param(params: Map<string, tf.Variable>, name: string): tf.Variable {
  const v = params.get(name);
  if (v === undefined) throw new Error(`tokenizer parameter "${name}" is missing`);
  return v;
}

function residualBlocks(
  params: Map<string, tf.Variable>,
  prefix: string,
  count: number,
  x: tf.Tensor4D,
): tf.Tensor4D {
  const P = (n: string) => param(params, n);
  for (let k = 0; k < count; k++) {
    const n = `${prefix}.b${k}`;
    let h = conv3x3(tf.relu(x), P(`${n}.c1.w`) as tf.Tensor4D, P(`${n}.c1.b`) as tf.Tensor1D);
    h = conv3x3(tf.relu(h), P(`${n}.c2.w`) as tf.Tensor4D, P(`${n}.c2.b`) as tf.Tensor1D);
    x = tf.add(x, h);
  }
  return x;
}

/**
 * Images to the network's input: `[B, imageSize, imageSize, C]` float32 in [-1, 1],
 * zero (black) padded symmetrically.
 *
 * @param images `[B, H, W]` or `[B, C, H, W]`; int32 = 0..255, float32 = 0..1
 * @param config resolved architecture (H = W = inputSize, C = channels)
 * @returns a new tensor the caller owns
 * @throws {TypeError} for a wrong rank, dtype, channel count or image size
 */
export function imagesToNetwork(images: tf.Tensor, config: ResolvedTokenizerConfig): tf.Tensor4D {
  const { inputSize: s, imageSize: S, channels: C } = config;
  const shape = images.shape;
  if (images.rank !== 3 && images.rank !== 4) {
    throw new TypeError(
      `Cannot tokenize images of shape [${shape}]: expected [B,H,W] or [B,C,H,W]`,
    );
  }
  if (images.dtype !== "int32" && images.dtype !== "float32") {
    throw new TypeError(
      `Cannot tokenize images of dtype ${images.dtype}: expected int32 (0..255) or float32 (0..1)`,
    );
  }
  const c = images.rank === 3 ? 1 : shape[1];
  const [h, w] = images.rank === 3 ? [shape[1], shape[2]] : [shape[2], shape[3]];
  if (c !== C) {
    throw new TypeError(
      `Cannot tokenize images of shape [${shape}]: the tokenizer takes ${C} channel(s)`,
    );
  }
  if (h !== s || w !== s) {
    throw new TypeError(
      `Cannot tokenize images of shape [${shape}]: the tokenizer takes ${s}x${s} images, got ${h}x${w}`,
    );
  }
  return tf.tidy(() => {
    const B = shape[0];
    let x = tf.cast(images, "float32");
    if (images.dtype === "int32") x = tf.div(x, 255);
    const nhwc = images.rank === 3
      ? tf.reshape(x, [B, s, s, 1])
      : tf.transpose(x as tf.Tensor4D, [0, 2, 3, 1]);
    const p = (S - s) / 2;
    const padded = p > 0 ? tf.pad(nhwc, [[0, 0], [p, p], [p, p], [0, 0]]) : nhwc;
    return tf.sub(tf.mul(padded, 2), 1) as tf.Tensor4D;
  });
}

/**
 * The network's output back to images: crop the padding, map [-1, 1] to [0, 1] (clipped),
 * NHWC to `[B, C, H, W]`.
 *
 * @param y `[B, imageSize, imageSize, C]` float32
 * @param config resolved architecture
 * @returns `[B, C, inputSize, inputSize]` float32 in [0, 1]; a new tensor the caller owns
 */
export function networkToImages(y: tf.Tensor4D, config: ResolvedTokenizerConfig): tf.Tensor4D {
  const { inputSize: s, imageSize: S } = config;
  return tf.tidy(() => {
    const p = (S - s) / 2;
    const [B, , , C] = y.shape;
    const crop = p > 0 ? tf.slice(y, [0, p, p, 0], [B, s, s, C]) : y;
    const img = tf.clipByValue(tf.div(tf.add(crop, 1), 2), 0, 1);
    return tf.transpose(img, [0, 3, 1, 2]) as tf.Tensor4D;
  });
}

/** Rows scaled to unit L2 norm (a zero row stays zero). [N, d] -> [N, d]. */
export function l2Normalize(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const n = tf.sqrt(tf.maximum(tf.sum(tf.square(x), 1, true), 1e-12));
    return tf.div(x, n) as tf.Tensor2D;
  });
}

/**
 * The decoder half of a tokenizer together with its codebook: all that is needed to turn
 * codes back into pixels (this is what ships in data/).
 */
export class VqDecoder {
  /** The architecture. */
  readonly config: ResolvedTokenizerConfig;
  /** Decoder parameters (`dec.*`), owned by this object. */
  readonly params: Map<string, tf.Variable>;
  #codebook: tf.Tensor2D;

  /**
   * Usually built by {@linkcode VqTokenizer.create} or {@linkcode loadDecoder}.
   *
   * @param config resolved architecture
   * @param params every `dec.*` parameter (taken over: disposed with this object)
   * @param codebook `[K, d]` float32 (taken over); rows are normalized on use
   * @throws {TypeError} when a parameter is missing or has the wrong shape
   */
  constructor(
    config: ResolvedTokenizerConfig,
    params: Map<string, tf.Variable>,
    codebook: tf.Tensor2D,
  ) {
    this.config = config;
    for (const p of paramSpecs(config)) {
      if (!p.name.startsWith("dec.")) continue;
      const v = params.get(p.name);
      if (v === undefined) throw new TypeError(`Decoder parameter "${p.name}" is missing`);
      if (v.shape.join() !== p.shape.join()) {
        throw new TypeError(
          `Decoder parameter "${p.name}" has shape [${v.shape}], expected [${p.shape}]`,
        );
      }
    }
    this.params = params;
    this.#codebook = this.#checkCodebook(codebook);
  }

  #checkCodebook(codebook: tf.Tensor2D): tf.Tensor2D {
    if (codebook.rank !== 2 || codebook.shape[1] !== this.config.codeDim) {
      throw new TypeError(
        `Codebook of shape [${codebook.shape}] does not fit code width ${this.config.codeDim}`,
      );
    }
    return codebook;
  }

  /** The codebook `[K, d]` float32, unit rows; owned by this object (do not dispose). */
  get codebook(): tf.Tensor2D {
    return this.#codebook;
  }

  /** The number of codes K. */
  get codebookSize(): number {
    return this.#codebook.shape[0];
  }

  /**
   * Replace the codebook (the old one is disposed).
   * @param codebook `[K, d]` float32, taken over by this object
   */
  setCodebook(codebook: tf.Tensor2D): void {
    const next = this.#checkCodebook(codebook);
    if (next !== this.#codebook) this.#codebook.dispose();
    this.#codebook = next;
  }

  /**
   * Code vectors to the network's output (the differentiable part of decoding).
   *
   * @param z `[B, n, n, d]` float32
   * @returns `[B, imageSize, imageSize, C]` float32 in about [-1, 1]; caller owns it
   */
  decodeVectors(z: tf.Tensor4D): tf.Tensor4D {
    const c = this.config;
    const P = (n: string) => param(this.params, n);
    return tf.tidy(() => {
      const L = c.widths.length - 1;
      let x = conv3x3(z, P("dec.in.w") as tf.Tensor4D, P("dec.in.b") as tf.Tensor1D);
      for (let l = L; l >= 0; l--) {
        x = residualBlocks(this.params, `dec.l${l}`, c.decoderBlocks[l], x);
        if (l > 0) {
          x = depthToSpace2(
            dense(tf.relu(x), P(`dec.up${l}.w`) as tf.Tensor2D, P(`dec.up${l}.b`) as tf.Tensor1D),
          );
        }
      }
      return conv3x3(tf.relu(x), P("dec.out.w") as tf.Tensor4D, P("dec.out.b") as tf.Tensor1D);
    });
  }

  /**
   * Codes to code vectors: rows of the codebook.
   *
   * @param codes `[B, n, n]` int32 in [0, K)
   * @returns `[B, n, n, d]` float32; caller owns it
   * @throws {TypeError} for a wrong shape or dtype
   * @throws {RangeError} for a code outside [0, K) (reads the codes back to check)
   */
  embed(codes: tf.Tensor3D): tf.Tensor4D {
    const n = gridSize(this.config);
    if (codes.rank !== 3 || codes.shape[1] !== n || codes.shape[2] !== n) {
      throw new TypeError(
        `Cannot decode codes of shape [${codes.shape}]: expected [B, ${n}, ${n}]`,
      );
    }
    if (codes.dtype !== "int32") {
      throw new TypeError(`Cannot decode codes of dtype ${codes.dtype}: expected int32`);
    }
    const K = this.codebookSize;
    const flat = codes.dataSync();
    for (let i = 0; i < flat.length; i++) {
      if (!(flat[i] >= 0 && flat[i] < K)) {
        throw new RangeError(
          `Cannot decode code ${flat[i]} at record ${Math.floor(i / (n * n))}, position ` +
            `${i % (n * n)}: the codebook has ${K} codes`,
        );
      }
    }
    return tf.tidy(() => {
      const rows = tf.gather(this.#codebook, tf.reshape(codes, [-1]));
      return tf.reshape(rows, [codes.shape[0], n, n, this.config.codeDim]) as tf.Tensor4D;
    });
  }

  /**
   * Codes to images.
   *
   * @param codes `[B, n, n]` int32 in [0, K)
   * @returns `[B, C, inputSize, inputSize]` float32 in [0, 1]; caller owns it
   * @throws {TypeError} for a wrong shape or dtype
   * @throws {RangeError} for a code outside [0, K)
   */
  decode(codes: tf.Tensor3D): tf.Tensor4D {
    const z = this.embed(codes);
    try {
      return tf.tidy(() => networkToImages(this.decodeVectors(z), this.config));
    } finally {
      z.dispose();
    }
  }

  /** Free every tensor this object owns. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.#codebook.dispose();
  }
}

/**
 * A VQ tokenizer: encoder + {@linkcode VqDecoder} (which holds the codebook).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { Rng } from "@lib/random";
 * import { resolveTokenizerConfig, VqTokenizer } from "@lib/tokenizer";
 * await tf.setBackend("cpu");
 * const tok = VqTokenizer.create(resolveTokenizerConfig({ codebookSize: 8 }), new Rng(0));
 * const images = tf.zeros([2, 28, 28], "int32");
 * const codes = tok.encode(images as tf.Tensor3D); // [2, 8, 8] int32
 * const back = tok.decode(codes); // [2, 1, 28, 28] float32 in [0, 1]
 * console.assert(codes.shape[1] === 8 && back.shape[2] === 28);
 * tf.dispose([images, codes, back]);
 * tok.dispose();
 * ```
 */
export class VqTokenizer {
  /** The architecture. */
  readonly config: ResolvedTokenizerConfig;
  /** Encoder parameters (`enc.*`), owned by this object. */
  readonly encoderParams: Map<string, tf.Variable>;
  /** The decoder and the codebook. */
  readonly decoder: VqDecoder;

  /**
   * Usually built by {@linkcode VqTokenizer.create} or {@linkcode loadTokenizer}.
   *
   * @param config resolved architecture
   * @param encoderParams every `enc.*` parameter (taken over)
   * @param decoder the decoder and codebook (taken over)
   * @throws {TypeError} when a parameter is missing or has the wrong shape
   */
  constructor(
    config: ResolvedTokenizerConfig,
    encoderParams: Map<string, tf.Variable>,
    decoder: VqDecoder,
  ) {
    for (const p of paramSpecs(config)) {
      if (!p.name.startsWith("enc.")) continue;
      const v = encoderParams.get(p.name);
      if (v === undefined) throw new TypeError(`Encoder parameter "${p.name}" is missing`);
      if (v.shape.join() !== p.shape.join()) {
        throw new TypeError(
          `Encoder parameter "${p.name}" has shape [${v.shape}], expected [${p.shape}]`,
        );
      }
    }
    this.config = config;
    this.encoderParams = encoderParams;
    this.decoder = decoder;
  }

  /**
   * A freshly initialized tokenizer (He-normal weights, random unit codebook), seeded.
   *
   * @param config resolved architecture
   * @param rng the generator for every initial value (advanced)
   * @returns a new tokenizer; call `dispose()` when done
   */
  static create(config: ResolvedTokenizerConfig, rng: Rng): VqTokenizer {
    const all = initParams(paramSpecs(config), rng);
    const enc = new Map<string, tf.Variable>();
    const dec = new Map<string, tf.Variable>();
    for (const [k, v] of all) (k.startsWith("enc.") ? enc : dec).set(k, v);
    const cb = rng.normalArray(config.codebookSize * config.codeDim);
    const codebook = tf.tidy(() =>
      l2Normalize(tf.tensor2d(cb, [config.codebookSize, config.codeDim]))
    );
    return new VqTokenizer(config, enc, new VqDecoder(config, dec, codebook));
  }

  /** The codebook `[K, d]` float32, unit rows; owned by the decoder (do not dispose). */
  get codebook(): tf.Tensor2D {
    return this.decoder.codebook;
  }

  /** Every trainable parameter, encoder then decoder, in a stable order. */
  trainableVariables(): tf.Variable[] {
    return paramSpecs(this.config).map((p) =>
      (p.name.startsWith("enc.") ? this.encoderParams : this.decoder.params).get(p.name)!
    );
  }

  /** Parameter names in the order of {@linkcode VqTokenizer.trainableVariables}. */
  parameterNames(): string[] {
    return paramSpecs(this.config).map((p) => p.name);
  }

  /**
   * The encoder on network input, L2-normalized (the differentiable part of encoding).
   *
   * @param x `[B, imageSize, imageSize, C]` float32 in [-1, 1] (see {@linkcode imagesToNetwork})
   * @returns `[B * n * n, d]` float32 unit rows, row-major over (b, y, x); caller owns it
   */
  encodeVectors(x: tf.Tensor4D): tf.Tensor2D {
    const c = this.config;
    const P = (n: string) => param(this.encoderParams, n);
    return tf.tidy(() => {
      const L = c.widths.length - 1;
      let h = conv3x3(x, P("enc.stem.w") as tf.Tensor4D, P("enc.stem.b") as tf.Tensor1D);
      for (let l = 0; l <= L; l++) {
        h = residualBlocks(this.encoderParams, `enc.l${l}`, c.encoderBlocks[l], h);
        if (l < L) {
          h = dense(
            spaceToDepth2(tf.relu(h)),
            P(`enc.down${l}.w`) as tf.Tensor2D,
            P(`enc.down${l}.b`) as tf.Tensor1D,
          );
        }
      }
      const [B, n, , w] = h.shape;
      const e = tf.add(
        linear(tf.reshape(tf.relu(h), [B * n * n, w]), P("enc.out.w") as tf.Tensor2D),
        P("enc.out.b"),
      ) as tf.Tensor2D;
      return l2Normalize(e);
    });
  }

  /**
   * Images to codes: nearest codebook row by cosine similarity.
   *
   * @param images `[B, H, W]` or `[B, C, H, W]`; int32 = 0..255, float32 = 0..1
   * @returns `[B, n, n]` int32; caller owns it
   * @throws {TypeError} for a wrong rank, dtype, channel count or image size
   */
  encode(images: tf.Tensor3D | tf.Tensor4D): tf.Tensor3D {
    const n = gridSize(this.config);
    const x = imagesToNetwork(images, this.config);
    try {
      return tf.tidy(() => {
        const e = this.encodeVectors(x);
        const codes = assignCodes(e, this.codebook);
        return tf.reshape(codes, [images.shape[0], n, n]) as tf.Tensor3D;
      });
    } finally {
      x.dispose();
    }
  }

  /**
   * Codes to images (the decoder's {@linkcode VqDecoder.decode}).
   *
   * @param codes `[B, n, n]` int32 in [0, K)
   * @returns `[B, C, inputSize, inputSize]` float32 in [0, 1]; caller owns it
   */
  decode(codes: tf.Tensor3D): tf.Tensor4D {
    return this.decoder.decode(codes);
  }

  /** Free every tensor this object owns. */
  dispose(): void {
    for (const v of this.encoderParams.values()) v.dispose();
    this.decoder.dispose();
  }
}

/**
 * Nearest codebook row by cosine similarity (both sides are unit rows here, so this is
 * the reference's `convertToCodes` on normalized inputs).
 *
 * @param e `[N, d]` float32 unit rows
 * @param codebook `[K, d]` float32 unit rows
 * @returns `[N]` int32 code indices; caller owns it
 */
export function assignCodes(e: tf.Tensor2D, codebook: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.argMax(linear(e, tf.transpose(codebook)), 1) as tf.Tensor1D);
}
