/**
 * `deno task tokenize --tokenizer <dir> --out <dir> [--images <idx|png folder> --labels <idx|txt>
 *  --name NAME]... [--no-psnr] [--backend wasm]`
 *
 * Turns image sets into token datasets in the official SeiT format with a trained
 * tokenizer, and writes everything a consumer needs next to them:
 * ```
 * NAME-token.data.bin.gz, NAME-token.index.npy.gz, NAME-label.txt   per image set
 * codebook.safetensors (tensor "codebook"), codebook.npy            [K, d] float32
 * synonyms.json                                                     8 nearest codes (cosine)
 * decoder.safetensors, tokenizer.json                               to decode tokens to pixels
 * ```
 * Without `--images`, tokenizes both Fashion-MNIST splits from Debian's
 * `dataset-fashion-mnist` as `fmnist-train` and `fmnist-test`. `--images`, `--labels` and
 * `--name` may repeat (one of each per set, in order; `--labels` may be left out entirely).
 * For each set it prints the stored bytes per image (data + index) against the source
 * file and against per-image PNGs, and (unless `--no-psnr`) the reconstruction PSNR.
 * The summary is also written to `tokenize.json` in the output folder.
 *
 * Exit status 1 for unreadable input (one line naming file and index), 2 for bad arguments.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type BackendRequest, describeBackend, initBackend } from "@lib/backend";
import {
  encodePng,
  type HostTensor,
  readIdxFile,
  writeFileAtomic,
  writeNpyFile,
  writeSafetensorsFile,
} from "@lib/io";
import {
  buildSynonyms,
  readLabels,
  TokenFileError,
  writeSynonyms,
  writeTokenDataset,
} from "@lib/tokens";
import { callerPath } from "./_paths.ts";
import {
  decoderTensors,
  encodeImages,
  gridSize,
  imageSetDims,
  loadImages,
  loadTokenizer,
  reconstructionMetrics,
  saveDecoder,
} from "@lib/tokenizer";

const FASHION = "/usr/share/datasets/fashion-mnist";

const USAGE = "usage: deno task tokenize --tokenizer <dir> --out <dir> " +
  "[--images <idx file|png folder> [--labels <idx|txt>] --name NAME]... [--no-psnr] " +
  "[--backend wasm|cpu|webgpu|auto]";

function fail(message: string, status: number): never {
  console.error(`tokenize: ${message}`);
  Deno.exit(status);
}

async function readLabelFile(path: string): Promise<Int32Array> {
  if (/\.txt$/i.test(path)) return await readLabels(path);
  const t = await readIdxFile(path);
  if (t.shape.length !== 1) {
    throw new SyntaxError(`Cannot read labels "${path}": shape [${t.shape}], expected 1-D`);
  }
  return Int32Array.from(t.data as ArrayLike<number>);
}

function pngBytes(images: HostTensor): number {
  const [N, C, H, W] = imageSetDims(images);
  const src = images.data as Uint8Array;
  let total = 0;
  const img = new Uint8Array(H * W * C);
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      for (let p = 0; p < H * W; p++) img[p * C + c] = src[(i * C + c) * H * W + p];
    }
    total += encodePng({ dtype: "uint8", shape: [H, W, C], data: img }).length;
  }
  return total;
}

interface SetSpec {
  images: string;
  labels: string | null;
  name: string;
}

async function main(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        tokenizer: { type: "string" },
        out: { type: "string" },
        images: { type: "string", multiple: true },
        labels: { type: "string", multiple: true },
        name: { type: "string", multiple: true },
        "no-psnr": { type: "boolean" },
        backend: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`, 2);
  }
  const v = parsed.values;
  if (v.help) {
    console.log(USAGE);
    return;
  }
  if (v.tokenizer === undefined || v.out === undefined) {
    fail(`--tokenizer and --out are required\n${USAGE}`, 2);
  }
  let sets: SetSpec[];
  if (v.images === undefined) {
    if (v.labels !== undefined || v.name !== undefined) {
      fail(`--labels and --name go with --images\n${USAGE}`, 2);
    }
    sets = [
      {
        images: `${FASHION}/train-images-idx3-ubyte.gz`,
        labels: `${FASHION}/train-labels-idx1-ubyte.gz`,
        name: "fmnist-train",
      },
      {
        images: `${FASHION}/t10k-images-idx3-ubyte.gz`,
        labels: `${FASHION}/t10k-labels-idx1-ubyte.gz`,
        name: "fmnist-test",
      },
    ];
  } else {
    const n = v.images.length;
    if ((v.name?.length ?? 0) !== n || (v.labels !== undefined && v.labels.length !== n)) {
      fail(`give one --name (and one --labels, if any) per --images\n${USAGE}`, 2);
    }
    sets = v.images.map((images, i) => ({
      images: callerPath(images),
      labels: callerPath(v.labels?.[i]) ?? null,
      name: v.name![i],
    }));
  }
  for (const s of sets) {
    if (!/^[A-Za-z0-9_.-]+$/.test(s.name)) fail(`--name "${s.name}" must be a plain file name`, 2);
  }
  // every input is found and every label file read before the first output is written
  const labelsOf = new Map<string, Int32Array>();
  for (const s of sets) {
    try {
      await Deno.stat(s.images);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) fail(`Cannot read "${s.images}": no such file`, 1);
      throw e;
    }
    if (s.labels === null) continue;
    try {
      labelsOf.set(s.labels, await readLabelFile(s.labels));
    } catch (e) {
      if (
        e instanceof Deno.errors.NotFound || e instanceof SyntaxError || e instanceof RangeError ||
        e instanceof TypeError || e instanceof TokenFileError
      ) {
        fail((e as Error).message, 1);
      }
      throw e;
    }
  }
  const info = await initBackend({ backend: (v.backend ?? "wasm") as BackendRequest });
  console.error(describeBackend(info));
  const out = callerPath(v.out);
  const tokenizerDir = callerPath(v.tokenizer);
  try {
    if (!(await Deno.stat(out)).isDirectory) {
      fail(`Cannot write to --out "${out}": it is a file, not a folder`, 2);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(out, { recursive: true });
  const tok = await loadTokenizer(tokenizerDir).catch((e) => fail((e as Error).message, 1));
  try {
    const n = gridSize(tok.config);
    const K = tok.decoder.codebookSize;
    const summary: Record<string, unknown>[] = [];
    for (const s of sets) {
      const loaded = await loadImages(s.images);
      const N = loaded.images.shape[0];
      let labels: Int32Array | undefined;
      if (s.labels !== null) {
        labels = labelsOf.get(s.labels)!;
        if (labels.length !== N) {
          throw new RangeError(
            `Cannot pair "${s.images}" (${N} images) with "${s.labels}" (${labels.length} labels): counts differ`,
          );
        }
      }
      const t0 = performance.now();
      const codes = encodeImages(tok, loaded.images, { source: s.images });
      const seconds = (performance.now() - t0) / 1000;
      const dataPath = `${out}/${s.name}-token.data.bin.gz`;
      const w = await writeTokenDataset(dataPath, codes, {
        gridSide: n,
        codebookSize: K,
        labels,
        level: 9,
      });
      const indexBytes = (await Deno.stat(w.indexPath)).size;
      const labelBytes = w.labelsPath === null ? 0 : (await Deno.stat(w.labelsPath)).size;
      const sourceBytes = (await Deno.stat(s.images)).isFile
        ? (await Deno.stat(s.images)).size
        : null;
      const png = pngBytes(loaded.images);
      const tokenBytes = w.compressedBytes + indexBytes;
      const row: Record<string, unknown> = {
        name: s.name,
        images: s.images,
        labels: s.labels,
        records: N,
        gridSide: n,
        codebookSize: K,
        encodeSeconds: Number(seconds.toFixed(1)),
        dataGzBytes: w.compressedBytes,
        indexGzBytes: indexBytes,
        labelBytes,
        tokenBytesPerImage: tokenBytes / N,
        sourceBytes,
        sourceBytesPerImage: sourceBytes === null ? null : sourceBytes / N,
        pngBytesPerImage: png / N,
      };
      if (!v["no-psnr"]) {
        const m = reconstructionMetrics(tok.decoder, codes, loaded.images, { source: s.images });
        row.psnr = m.psnr;
        row.meanImagePsnr = m.meanImagePsnr;
        row.mse = m.mse;
      }
      summary.push(row);
      const ratio = (x: number | null) => x === null ? "?" : (x / (tokenBytes / N)).toFixed(1);
      console.log(
        `${s.name}: ${N} images -> ${dataPath} (${n}x${n} codes, K=${K}); tokens ${
          (tokenBytes / N).toFixed(1)
        } B/image (data ${w.compressedBytes} + index ${indexBytes} bytes); source ${
          sourceBytes === null ? "?" : (sourceBytes / N).toFixed(1)
        } B/image (${ratio(sourceBytes === null ? null : sourceBytes / N)}x); PNG ${
          (png / N).toFixed(1)
        } B/image (${ratio(png / N)}x)` +
          (row.psnr !== undefined
            ? `; PSNR ${(row.psnr as number).toFixed(2)} dB (mean per image ${
              (row.meanImagePsnr as number).toFixed(2)
            } dB)`
            : ""),
      );
    }
    const tensors = await decoderTensors(tok.decoder);
    const codebook = tensors.get("codebook")! as HostTensor<"float32">;
    await writeSafetensorsFile(`${out}/codebook.safetensors`, { codebook });
    await writeNpyFile(`${out}/codebook.npy`, codebook);
    await writeSynonyms(
      `${out}/synonyms.json`,
      buildSynonyms(codebook, { k: Math.min(8, codebook.shape[0] - 1) }),
    );
    const tokInfo = await Deno.readTextFile(`${tokenizerDir}/tokenizer.json`);
    await saveDecoder(out, tok.decoder, {
      tokenizer: v.tokenizer,
      training: JSON.parse(tokInfo).info ?? {},
      tokenized: summary,
    });
    await writeFileAtomic(
      `${out}/tokenize.json`,
      new TextEncoder().encode(JSON.stringify(summary, null, 2) + "\n"),
    );
    console.log(`wrote codebook, synonyms, decoder and tokenizer.json to ${out}`);
  } catch (e) {
    if (
      e instanceof Deno.errors.NotFound || e instanceof SyntaxError || e instanceof RangeError ||
      e instanceof TypeError || e instanceof TokenFileError
    ) {
      fail((e as Error).message, 1);
    }
    throw e;
  } finally {
    tok.dispose();
  }
}

if (import.meta.main) await main(Deno.args);
