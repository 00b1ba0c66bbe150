import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { readSafetensorsFile, writeSafetensorsFile } from "@lib/io";
import { Rng } from "@lib/random";
import {
  loadDecoder,
  loadTokenizer,
  readTokenizerJson,
  resolveTokenizerConfig,
  saveDecoder,
  saveTokenizer,
  tokenizerTensors,
  VqTokenizer,
} from "@lib/tokenizer";

const TINY = { widths: [4, 8, 8], codebookSize: 16, codeDim: 8 };

Deno.test("saveTokenizer/loadTokenizer and saveDecoder/loadDecoder round-trip exactly", async () => {
  await initBackend({ backend: "cpu" });
  const dir = await Deno.makeTempDir();
  const decDir = await Deno.makeTempDir();
  try {
    const tok = VqTokenizer.create(resolveTokenizerConfig(TINY), new Rng(1));
    await saveTokenizer(dir, tok, { note: "hi" });
    await saveDecoder(decDir, tok.decoder, { note: "decoder only" });
    const json = await readTokenizerJson(dir);
    assert.equal(json.codebookSize, 16);
    assert.deepEqual(json.config, tok.config);
    assert.equal(json.info.note, "hi");
    // the decoder file holds dec.* and the codebook only
    const dec = await readSafetensorsFile(`${decDir}/decoder.safetensors`);
    assert.ok([...dec.tensors.keys()].every((k) => k.startsWith("dec.") || k === "codebook"));
    const before = tf.memory().numTensors;
    const back = await loadTokenizer(dir);
    const a = await tokenizerTensors(tok), b = await tokenizerTensors(back);
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [k, v] of a) assert.deepEqual(b.get(k)!.data, v.data, k);
    // decoding with the decoder alone gives the same pixels as the full tokenizer
    const decoder = await loadDecoder(decDir);
    const x = tf.randomUniform([2, 28, 28], 0, 1, "float32", 3) as tf.Tensor3D;
    const codes = back.encode(x);
    const [p, q] = [tok.decode(codes), decoder.decode(codes)];
    assert.deepEqual(p.dataSync(), q.dataSync());
    tf.dispose([x, codes, p, q]);
    back.dispose();
    decoder.dispose();
    assert.equal(tf.memory().numTensors, before);
    tok.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(decDir, { recursive: true });
  }
});

Deno.test("loading refuses missing files, a wrong format tag, and missing or misshapen tensors", async () => {
  await initBackend({ backend: "cpu" });
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(loadDecoder(dir), Deno.errors.NotFound);
    const tok = VqTokenizer.create(resolveTokenizerConfig(TINY), new Rng(1));
    await saveTokenizer(dir, tok);
    tok.dispose();
    // loadDecoder falls back to tokenizer.safetensors
    (await loadDecoder(dir)).dispose();
    const st = await readSafetensorsFile(`${dir}/tokenizer.safetensors`);
    st.tensors.delete("dec.out.b");
    await writeSafetensorsFile(`${dir}/tokenizer.safetensors`, st.tensors);
    await assert.rejects(loadTokenizer(dir), {
      name: "TypeError",
      message: `Cannot load "${dir}/tokenizer.safetensors": no tensor "dec.out.b"`,
    });
    const cb = st.tensors.get("codebook")!;
    st.tensors.set("dec.out.b", { dtype: "float32", shape: [2], data: new Float32Array(2) });
    st.tensors.set("codebook", { ...cb, shape: [32, 4] });
    await writeSafetensorsFile(`${dir}/tokenizer.safetensors`, st.tensors);
    await assert.rejects(loadTokenizer(dir), {
      name: "TypeError",
      message: /"dec.out.b" from .*: shape \[2\], expected \[1\]/,
    });
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify({ format: "other" }));
    await assert.rejects(loadTokenizer(dir), {
      name: "SyntaxError",
      message: /not a seitpp-vq-tokenizer-1/,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
