import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  disposeColumns,
  galleryColumns,
  renderGallery,
  resolveTokenAdaptConfig,
  TokenAdapt,
} from "@lib/adapters";
import { Rng } from "@lib/random";
import { CodeQuantizer } from "@lib/tokens";
import { resolveTokenizerConfig, VqTokenizer } from "@lib/tokenizer";

const K = 12, D = 6, N = 4;

Deno.test("gallery: one column per augmentation, same shapes, labelled image, leak-free", async () => {
  await initBackend({ backend: "cpu" });
  // a real (untrained) tokenizer of this geometry: its codebook and decoder
  const tok = VqTokenizer.create(
    resolveTokenizerConfig({
      imageSize: 16,
      inputSize: 16,
      downsample: 4,
      widths: [4, 8, 8],
      codeDim: D,
      codebookSize: K,
    }),
    new Rng(1),
  );
  const q = CodeQuantizer.from(tok.codebook);
  const ta = TokenAdapt.create(
    resolveTokenAdaptConfig({
      codebookSize: K,
      codeDim: D,
      inputGrid: N,
      outputGrid: N,
      width: 16,
      heads: 2,
      headDim: 8,
      mlpDim: 32,
    }),
    new Rng(2),
  );
  const r = new Rng(3);
  const codes = tf.tensor3d(
    Int32Array.from({ length: 4 * N * N }, () => r.int(0, K)),
    [4, N, N],
    "int32",
  );
  const before = tf.memory().numTensors;
  const cols = galleryColumns(codes, { quantizer: q, tokenAdapt: ta, rng: new Rng(4) });
  assert.deepEqual(cols.map((c) => c.label.replace("\n", " ")), [
    "ORIGINAL",
    "FLIP",
    "TOKEN RRC",
    "NAIVE AFFINE",
    "TOKEN ADAPT",
    "TA ROUND TRIP",
    "COLOR ADAPT",
    "EMB NOISE",
    "CUTMIX",
    "TA MIXUP",
  ]);
  for (const c of cols) {
    assert.deepEqual(c.codes.shape, [4, N, N], c.label);
    assert.equal(c.codes.dtype, "int32");
  }
  assert.deepEqual(await cols[0].codes.data(), await codes.data());
  const img = renderGallery(cols, (c) => tok.decode(c), { scale: 2, padding: 3 });
  const width = cols.length * (16 * 2 + 3) + 3;
  assert.equal(img.shape[1], width);
  assert.equal(img.shape[2], 1);
  // the header holds white label pixels
  const headerRows = img.shape[0] - 4 * (16 * 2 + 3) - 3;
  let ink = 0;
  for (let i = 0; i < headerRows * width; i++) if (img.data[i] === 255) ink++;
  assert.ok(ink > 50, `label pixels: ${ink}`);
  disposeColumns(cols);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(
    () =>
      galleryColumns(tf.zeros([3, N, N], "int32") as tf.Tensor3D, {
        quantizer: q,
        tokenAdapt: null,
        rng: new Rng(0),
      }),
    /even count/,
  );
  tf.dispose(codes);
  ta.dispose();
  q.dispose();
  tok.dispose();
});
