import assert from "node:assert/strict";
import { gunzip, gunzipChunks, gzip, readMaybeGzipped } from "@lib/io";

const text = new TextEncoder().encode("seitpp ".repeat(500));

Deno.test("gunzip: a truncated stream is a SyntaxError naming the source", () => {
  const z = gzip(text);
  assert.throws(() => gunzip(z.subarray(0, z.length - 12), { source: "t.gz" }), {
    name: "SyntaxError",
    message: 'Cannot gunzip "t.gz": unexpected end of file',
  });
  assert.throws(() => gunzip(new Uint8Array([1, 2, 3, 4, 5]), { source: "n.gz" }), {
    name: "SyntaxError",
    message: 'Cannot gunzip "n.gz": incorrect header check',
  });
  assert.deepEqual(gunzip(z), text);
});

Deno.test("gunzipChunks: a truncated stream fails while iterating, naming the source", async () => {
  const z = gzip(text);
  const chunks = [z.subarray(0, 10), z.subarray(10, z.length - 12)];
  await assert.rejects(
    async () => {
      for await (const _ of gunzipChunks(chunks, { source: "s.gz" })) { /* drain */ }
    },
    { name: "SyntaxError", message: 'Cannot gunzip "s.gz": unexpected end of file' },
  );
});

Deno.test("readMaybeGzipped: a truncated .gz file is a SyntaxError naming the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const z = gzip(text);
    await Deno.writeFile(`${dir}/cut.bin.gz`, z.subarray(0, 30));
    await assert.rejects(() => readMaybeGzipped(`${dir}/cut.bin.gz`), {
      name: "SyntaxError",
      message: `Cannot gunzip "${dir}/cut.bin.gz": unexpected end of file`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
