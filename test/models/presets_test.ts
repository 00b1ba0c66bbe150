/** Presets: the official and fixture geometries, Fashion-MNIST grids, overrides checked. */
import assert from "node:assert/strict";
import {
  classifierFashion,
  classifierSmall,
  classifierVitBase,
  mtmFashion,
  mtmSmall,
  mtmVitBase,
  pixelVitFashion,
} from "@lib/models";

Deno.test("official and fixture presets carry the REFERENCE.md / fixture sizes", () => {
  const b = mtmVitBase();
  assert.deepEqual(
    [b.gridSide, b.patchSize, b.codebookSize, b.tokenDim, b.embedDim, b.depth, b.numHeads],
    [28, 2, 391, 32, 768, 12, 12],
  );
  const s = mtmSmall();
  assert.deepEqual(
    [s.embedDim, s.depth, s.numHeads, s.decoderEmbedDim, s.decoderDepth, s.decoderNumHeads],
    [192, 4, 3, 128, 2, 4],
  );
  assert.equal(classifierVitBase().numClasses, 1000);
  assert.equal(classifierSmall().embedDim, 192);
});

Deno.test("Fashion-MNIST presets: 8x8 grid with 1x1 patches, 16x16 with 2x2 (64 positions each)", () => {
  for (const side of [8, 16] as const) {
    const m = mtmFashion(side, { codebookSize: 200 });
    assert.equal(m.gridSide, side);
    assert.equal((m.gridSide / m.patchSize) ** 2, 64);
    assert.equal(m.codebookSize, 200);
    const c = classifierFashion(side);
    assert.equal(c.numClasses, 10);
    assert.equal(c.patchSize, m.patchSize);
  }
  assert.throws(() => mtmFashion(12 as 8), RangeError);
  assert.throws(() => mtmFashion(8, { bogus: 1 } as never), TypeError);
  const p = pixelVitFashion();
  assert.deepEqual([p.imageSize, p.channels, p.patchSize, p.numClasses], [28, 1, 4, 10]);
});
