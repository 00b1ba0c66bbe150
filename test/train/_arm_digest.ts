/**
 * A digest of what an arm's augmentation step hands the model over a few batches of the
 * embedded tokens (codes and soft targets), for the tests that pin the other arms' steps.
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "@lib/random";
import { openTokenDataset } from "@lib/tokens";
import { openRunAugment } from "@lib/train";

/**
 * SHA-256 (hex) of the codes and targets the step of a run config makes from `batches`
 * batches of `B` records of the embedded Fashion-MNIST training tokens, seeded.
 * @param config a fine-tuning run config (as `expandGrid` writes it)
 * @param batches how many batches
 * @param B records per batch
 * @returns the digest
 */
export async function armDigest(
  config: Record<string, unknown>,
  batches: number,
  B: number,
): Promise<string> {
  const opened = (await openRunAugment("finetune", config as never))!;
  const ds = await openTokenDataset("data/fmnist8/fmnist-train-token.data.bin.gz", {
    codebookSize: 256,
  });
  const rng = new Rng(11).fork("augment");
  const parts: Uint8Array[] = [];
  try {
    for (let i = 0; i < batches; i++) {
      const idx = Int32Array.from({ length: B }, (_, j) => (i * 7919 + j * 131) % ds.length);
      const codes = ds.readBatchTensor(Array.from(idx));
      const out = opened.step.hook(
        { codes, labels: ds.labelsOf(Array.from(idx)), epoch: 0, step: i },
        rng,
      );
      parts.push(new Uint8Array((await out.codes.data() as Int32Array).buffer.slice(0)));
      parts.push(new Uint8Array((await out.targets!.data() as Float32Array).buffer.slice(0)));
      tf.dispose([codes, out.codes, out.targets!]);
    }
  } finally {
    opened.dispose();
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) all.set(p, o), o += p.length;
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");
}
