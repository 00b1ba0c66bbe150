/**
 * The geometric augmentation a TokenAdapt is used with: the TokenAdapt half's settings of a
 * grid's pre-training and fine-tuning runs, read from the run configs the grid would write
 * (`expandGrid`, then the step each run resolves, `storedRunStep`): the same path
 * `deno task recipe` and the training runs take. `deno task tokenadapt:train` trains on
 * these, so that TokenAdapt sees the crop range, flip and affine chain it meets later.
 *
 * @module
 */
import type { ResolvedGeometricAugConfig } from "../../adapters/mod.ts";
import { storedRunStep } from "../augment/augment_run.ts";
import { expandGrid, type GridConfig, type MeasuredBudget } from "./grid.ts";

/** One phase a TokenAdapt is used in, and the augmentation its TokenAdapt half draws. */
export interface TokenAdaptUse {
  /** Pre-training or fine-tuning. */
  phase: "pretrain" | "finetune";
  /** The grid run it was read from (e.g. `ft-seitpp-fm8-600-s0`). */
  run: string;
  /** The TokenAdapt half's geometric settings in that run (crop = the step's `rrcScale`). */
  geometric: ResolvedGeometricAugConfig;
}

/**
 * The TokenAdapt half's geometric settings in each phase of a grid arm that uses TokenAdapt
 * with the geometric augmentation (its first run on a token budget, and the pre-training run
 * it starts from, when that run has the TokenAdapt half).
 *
 * @param g the resolved grid
 * @param budgets its budgets (`plannedBudgets` is enough: nothing is measured)
 * @param arm a method arm whose augmentation uses TokenAdapt. @default {"seitpp"}
 * @returns one entry per phase, pre-training first
 * @throws {RangeError} when the grid does not run the arm, or the arm has no TokenAdapt half
 *   with the geometric augmentation
 */
export function tokenAdaptUses(
  g: GridConfig,
  budgets: readonly MeasuredBudget[],
  arm = "seitpp",
): TokenAdaptUse[] {
  const specs = expandGrid(g, budgets, { runsDir: "runs" });
  const byId = new Map(specs.map((s) => [s.id, s]));
  const ft = specs.find((s) => s.kind === "finetune" && s.config.grid.arm === arm);
  if (ft === undefined) {
    throw new RangeError(`The grid "${g.name}" runs no fine-tuning arm "${arm}" on tokens`);
  }
  const out: TokenAdaptUse[] = [];
  const add = (phase: "pretrain" | "finetune", id: string) => {
    const spec = byId.get(id)!;
    const step = storedRunStep(spec.config);
    if (step !== null && step.tokenAdapt && step.tokenAdaptGeometry === "augment") {
      out.push({ phase, run: id, geometric: step.geometric });
    }
  };
  for (const dep of ft.deps) {
    if (byId.get(dep)?.kind === "pretrain") add("pretrain", dep);
  }
  add("finetune", ft.id);
  if (!out.some((u) => u.phase === "finetune")) {
    throw new RangeError(
      `The arm "${arm}" of the grid "${g.name}" has no TokenAdapt half with the geometric augmentation`,
    );
  }
  return out;
}
