import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gzip, type HostTensor, UnsafePickleError, writeNpy, writeSafetensors } from "@lib/io";
import { loadCodebook, toCodebook } from "@lib/tokens";
import { parityPath } from "../_support/fixtures.ts";

/** SHA-256 of the fixture codebook's float32 bytes, computed with NumPy. */
const CODEBOOK_SHA256 = "2c638f4da9bd9b5ccb5a9057597227355f38bcb30e6d87805a7c0d991845a225";

function sha256(a: Float32Array): string {
  return createHash("sha256").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest(
    "hex",
  );
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seitpp-codebook-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const f32 = (shape: number[], values: number[]): HostTensor<"float32"> => ({
  dtype: "float32",
  shape,
  data: Float32Array.from(values),
});

Deno.test("the fixture codebook.safetensors loads as float32 [391, 32] with the NumPy checksum", async () => {
  const cb = await loadCodebook(parityPath("codebook.safetensors"), { size: 391, dim: 32 });
  assert.equal(cb.dtype, "float32");
  assert.deepEqual(cb.shape, [391, 32]);
  assert.equal(cb.data[0], Math.fround(-1.5255959033966064));
  assert.equal(cb.data[17 * 32 + 5], Math.fround(-0.39687249064445496));
  assert.equal(cb.data[390 * 32 + 31], Math.fround(-1.0525814294815063));
  assert.equal(sha256(cb.data), CODEBOOK_SHA256);
});

Deno.test("codebook.ckpt (torch.save zip) and codebook_legacy.ckpt load bit for bit like the safetensors copy", async () => {
  for (const name of ["codebook.ckpt", "codebook_legacy.ckpt"]) {
    const cb = await loadCodebook(parityPath(name), { size: 391, dim: 32 });
    assert.equal(cb.dtype, "float32");
    assert.deepEqual(cb.shape, [391, 32]);
    assert.equal(sha256(cb.data), CODEBOOK_SHA256, name);
  }
});

Deno.test("a hostile pickle posing as a codebook is refused, nothing executed", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/codebook.ckpt`;
    await Deno.copyFile(parityPath("malicious.ckpt"), path);
    await assert.rejects(loadCodebook(path), UnsafePickleError);
  });
});

Deno.test("codebooks load from .npy and .npy.gz (float64 converted to float32)", async () => {
  await withDir(async (dir) => {
    const t = {
      dtype: "float64" as const,
      shape: [3, 2],
      data: Float64Array.from([1, 2, 3, 4, 5, 6.5]),
    };
    await Deno.writeFile(`${dir}/c.npy`, writeNpy(t));
    await Deno.writeFile(`${dir}/c.npy.gz`, gzip(writeNpy(t)));
    for (const name of ["c.npy", "c.npy.gz"]) {
      const cb = await loadCodebook(`${dir}/${name}`);
      assert.equal(cb.dtype, "float32");
      assert.deepEqual(cb.shape, [3, 2]);
      assert.deepEqual(Array.from(cb.data), [1, 2, 3, 4, 5, 6.5]);
    }
  });
});

Deno.test("safetensors: the tensor named codebook, else weight, else the only one; otherwise a TypeError", async () => {
  await withDir(async (dir) => {
    const a = f32([2, 1], [1, 2]), b = f32([2, 1], [3, 4]), c = f32([2, 1], [5, 6]);
    const cases: [Record<string, HostTensor>, number[]][] = [
      [{ codebook: a, weight: b, other: c }, [1, 2]],
      [{ weight: b, other: c }, [3, 4]],
      [{ foo: c }, [5, 6]],
    ];
    for (const [tensors, want] of cases) {
      await Deno.writeFile(`${dir}/c.safetensors`, writeSafetensors(tensors));
      assert.deepEqual(Array.from((await loadCodebook(`${dir}/c.safetensors`)).data), want);
    }
    await Deno.writeFile(`${dir}/c.safetensors`, writeSafetensors({ x: a, y: b }));
    await assert.rejects(
      loadCodebook(`${dir}/c.safetensors`),
      new TypeError(
        `Cannot find the codebook in "${dir}/c.safetensors": it holds 2 tensors (x, y) and none is named "codebook" or "weight"`,
      ),
    );
  });
});

Deno.test("a codebook that is not a finite float [K, d] of the required size is refused", async () => {
  assert.throws(
    () => toCodebook({ dtype: "int64", shape: [2, 2], data: new BigInt64Array(4) }, "c.npy"),
    new TypeError(
      'Cannot use "c.npy" as a codebook: expected a floating-point [K, d] tensor, got int64 [2,2]',
    ),
  );
  assert.throws(
    () => toCodebook(f32([4], [1, 2, 3, 4]), "c.npy"),
    new TypeError(
      'Cannot use "c.npy" as a codebook: expected a non-empty [K, d] tensor, got float32 [4]',
    ),
  );
  assert.throws(
    () => toCodebook(f32([2, 2], [1, 2, 3, 4]), "c.npy", { size: 391 }),
    new TypeError('Cannot use "c.npy" as a codebook: expected K = 391 codes, got float32 [2,2]'),
  );
  assert.throws(
    () => toCodebook(f32([2, 2], [1, 2, 3, 4]), "c.npy", { dim: 32 }),
    new TypeError('Cannot use "c.npy" as a codebook: expected width d = 32, got float32 [2,2]'),
  );
  assert.throws(
    () => toCodebook(f32([2, 2], [1, 2, NaN, 4]), "c.npy"),
    new RangeError('Cannot use "c.npy" as a codebook: row 1, column 0 is NaN'),
  );
  await assert.rejects(
    loadCodebook("/nonexistent/codebook.bin"),
    new TypeError(
      'Cannot load codebook "/nonexistent/codebook.bin": unknown file type (expected .npy, .npy.gz, .safetensors, .ckpt, .pth or .pt)',
    ),
  );
  await assert.rejects(loadCodebook("/nonexistent/codebook.npy"), Deno.errors.NotFound);
});
