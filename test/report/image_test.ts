import assert from "node:assert/strict";
import { decodePng, encodePng, type HostTensor } from "@lib/io";
import { $display, imageGrid, imageView, toBase64 } from "@lib/report";

function gray(h: number, w: number, v: (y: number, x: number) => number): HostTensor<"uint8"> {
  const data = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = v(y, x);
  return { dtype: "uint8", shape: [h, w], data };
}

Deno.test("an image view from a uint8 [H, W] tensor displays image/png (round trips) and scaled html", () => {
  const img = gray(28, 28, (y, x) => (x + y) % 256);
  const v = imageView(img, { caption: "ramp" });
  assert.equal(v.width, 28);
  assert.equal(v.height, 28);
  assert.equal(v.scale, 8); // ceil(320/28) = 12, capped at 8
  const b = v[$display]();
  assert.deepEqual(Object.keys(b).sort(), ["image/png", "text/html", "text/plain"]);
  const png = Uint8Array.from(atob(b["image/png"] as string), (c) => c.charCodeAt(0));
  const back = decodePng(png);
  assert.deepEqual(back.shape, [28, 28, 1]);
  assert.deepEqual(back.data, img.data);
  assert.ok((b["text/html"] as string).includes('width="224" height="224"'));
  assert.ok((b["text/html"] as string).includes("image-rendering:pixelated"));
  assert.equal(String(v), `Image "ramp" 28x28 (PNG, ${v.png.length} bytes)`);
});

Deno.test("an image view takes PNG bytes as they are and refuses other bytes", () => {
  const rgb: HostTensor<"uint8"> = {
    dtype: "uint8",
    shape: [2, 3, 3],
    data: new Uint8Array(18).fill(7),
  };
  const png = encodePng(rgb);
  const v = imageView(png, { scale: 2 });
  assert.equal(v.png, png);
  assert.equal(v.width, 3);
  assert.equal(v.height, 2);
  assert.throws(() => imageView(new Uint8Array([1, 2, 3])), {
    name: "TypeError",
    message: "Cannot display image: the bytes are not a PNG file (bad signature)",
  });
  assert.throws(() => imageView(png, { scale: 0 }), RangeError);
});

Deno.test("imageGrid tiles images with @lib/io's tileImages and refuses float images", () => {
  const imgs = Array.from({ length: 5 }, (_, k) => gray(4, 6, () => 10 * k));
  const v = imageGrid(imgs, { columns: 3, padding: 1 });
  const back = decodePng(v.png);
  assert.deepEqual(back.shape, [2 * 4 + 3, 3 * 6 + 4, 1]);
  assert.equal(back.data[(1 + 4 + 1) * 22 + 1 + 6 + 1], 40); // image 4: row 1, column 1
  const f: HostTensor = { dtype: "float32", shape: [2, 2], data: new Float32Array(4) };
  assert.throws(() => imageGrid([f]), {
    name: "TypeError",
    message:
      "Cannot display a float32 image grid: expected uint8 (map with toUint8Image of @lib/io)",
  });
});

Deno.test("toBase64 matches btoa on long inputs", () => {
  const bytes = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 31) & 255);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  assert.equal(toBase64(bytes), btoa(bin));
});
