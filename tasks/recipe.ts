/**
 * `deno task recipe <config.json | grid.json> [--arm NAME] [--json]`: print the training step
 * a run of that config will execute, resolved by the same path the training tasks and the
 * grid take (`resolveRun` / `expandGrid`, then `describeRecipe`).
 *
 * @module
 */
import { join } from "node:path";
import { reportUserError } from "./_errors.ts";
import { resolveRun } from "./_train_cli.ts";
import {
  describeRecipe,
  gridRecipes,
  plannedBudgets,
  readConfigFile,
  type RecipeDescription,
  resolveGridConfig,
} from "@lib/train";
import { callerPath } from "./_paths.ts";

const USAGE = `Usage: deno task recipe <config.json | grid.json> [options]

Prints the training step a run of that config executes: model widths and depths, effective
batch, lr, the colour step's choice probabilities, and per half of the batch (base first,
TokenAdapt second) the crop range, flip, affine chain and mixing.

  <config.json>      a pretrain / finetune config file (as --config takes), or a run
                     folder's config.json
  <grid.json>        a grid config (deno task ablate): one recipe per method arm
  --arm NAME         only this arm of a grid (seit, seit_mtm, seitpp_nomtm, seitpp, ca, ta,
                     ca_mtm, ta_mtm, ita, ota, pixel)
  --phase P          pretrain | finetune, for a config file whose name does not say
  --json             print JSON
  -h, --help         this text`;

interface RecipeArgs {
  file: string;
  arm?: string;
  phase?: "pretrain" | "finetune";
  json: boolean;
}

function parse(argv: readonly string[]): RecipeArgs | "help" {
  let file: string | undefined, arm: string | undefined, phase: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") return "help";
    if (a === "--json") json = true;
    else if (a === "--arm" || a === "--phase") {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new SyntaxError(`Option ${a} needs a value`);
      if (a === "--arm") arm = v;
      else phase = v;
    } else if (a.startsWith("--arm=")) arm = a.slice(6);
    else if (a.startsWith("--phase=")) phase = a.slice(8);
    else if (a.startsWith("--")) throw new SyntaxError(`Unknown option ${a}`);
    else if (file === undefined) file = a;
    else throw new SyntaxError(`Unexpected argument ${JSON.stringify(a)}: one config file`);
  }
  if (file === undefined) throw new SyntaxError("Missing the config file");
  if (phase !== undefined && phase !== "pretrain" && phase !== "finetune") {
    throw new SyntaxError(`--phase ${phase}: expected pretrain or finetune`);
  }
  return { file: callerPath(file), arm, phase: phase as RecipeArgs["phase"], json };
}

/**
 * Resolve a file into recipes: a grid (by its `cells`), a run folder's stored config (by its
 * `kind` and `recipe`), or a task config file (through `resolveRun`).
 * @param a the parsed arguments
 * @returns a single recipe, or the grid's arm recipes
 */
export async function recipeOf(
  a: { file: string; arm?: string; phase?: "pretrain" | "finetune" },
): Promise<unknown> {
  const raw = await readConfigFile(a.file) as Record<string, unknown>;
  if (raw !== null && typeof raw === "object" && "cells" in raw) {
    const g = resolveGridConfig(raw, a.file);
    const budgets = await plannedBudgets(g, join("results", g.name, "data"));
    const r = gridRecipes(g, budgets, a.arm);
    return a.arm === undefined ? r : r[0];
  }
  if (a.arm !== undefined) {
    throw new TypeError(`--arm is for grid configs; ${a.file} is a run config`);
  }
  if (raw !== null && typeof raw === "object" && "kind" in raw && "grid" in raw) {
    return describeRecipe(raw);
  }
  const kind = a.phase ??
    (typeof raw?.kind === "string"
      ? raw.kind as "pretrain" | "finetune"
      : /pretrain/.test(a.file)
      ? "pretrain"
      : /finetune/.test(a.file)
      ? "finetune"
      : (raw?.model as Record<string, unknown> | undefined)?.decoderDepth !== undefined
      ? "pretrain"
      : "finetune");
  const { config } = await resolveRun(kind as "finetune", {
    config: a.file,
    help: false,
    overrides: [],
  });
  return describeRecipe(config as unknown as Record<string, unknown>);
}

const pct = (p: number) => `${Number((100 * p).toFixed(2))}%`;
const range = (r: readonly number[]) => `[${r.map((x) => Number(x.toFixed(4))).join(", ")}]`;

/**
 * The human-readable lines of one recipe.
 * @param r the recipe
 * @returns lines
 */
export function recipeLines(r: RecipeDescription): string[] {
  const m = r.model;
  const out = [
    `${r.phase} (recipe ${r.recipe}), augmentation arm ${
      r.arm ?? "none (plain crop, hard labels)"
    }; ${r.halfOrder}`,
    `  model: ${m.embedDim} wide x ${m.depth} blocks, ${m.numHeads} heads` +
    (m.decoderDepth !== undefined
      ? `; decoder ${m.decoderEmbedDim} wide x ${m.decoderDepth} blocks, ${m.decoderNumHeads} heads`
      : "") +
    `; grid ${m.gridSide}, patch ${m.patchSize}` +
    (m.headInitStd !== undefined
      ? `; init ${m.init ?? "from scratch"} (pos_embed ${
        m.posEmbedInit ?? "sincos"
      }, head std ${m.headInitStd})`
      : ""),
    `  batch: ${r.batchSize} x accum ${r.accumIter} = effective ${r.effectiveBatch}; lr ${r.lr} (${r.lrRule})`,
    `  colour step: ${
      r.colour.applied
        ? `one choice per batch: Emb-Noise ${pct(r.colour.noise)}, ColorAdapt ${
          pct(r.colour.colorAdapt)
        }, identity ${pct(r.colour.identity)}`
        : "none"
    }`,
    `  base half (${pct(r.baseHalf.fraction)} of the batch): RRC area ${
      range(r.baseHalf.cropScale)
    }, aspect ${range(r.baseHalf.cropRatio)}` +
    (r.mixup.base
      ? `; mix: mixup ${r.mixup.base.mixupAlpha} / cutmix ${r.mixup.base.cutmixAlpha}, p ${r.mixup.base.prob}`
      : ""),
  ];
  const t = r.tokenAdaptHalf;
  if (!t.used) out.push("  TokenAdapt half: not used");
  else {
    const geo = t.geometry === "identity"
      ? "identity geometry"
      : `flip ${pct(t.flip)}, affine chain ${pct(t.affine.p)} (each of ${t.affine.ops.join("/")} ${
        pct(t.affine.stepP)
      }), RRC area ${range(t.cropScale)}, aspect ${range(t.cropRatio)}`;
    const mx = r.mixup.tokenAdapt
      ? `; mix: mixup ${r.mixup.tokenAdapt.mixupAlpha} / cutmix ${r.mixup.tokenAdapt.cutmixAlpha}`
      : "";
    if (t.source === "oracle") {
      out.push(
        `  TokenAdapt half (${pct(t.fraction)} of the batch), ORACLE (no f, no g): the records' ` +
          `pixel images (${t.oracle?.images}) padded to the tokenizer's frame -> ${geo}` +
          `${mx} (the same draws, scaled to the frame) -> crop, clip -> the tokenizer's codes ` +
          `(${t.oracle?.tokenizer}), T(Mix(A(x))); the colour op's draws on these samples ` +
          `applied to their embeddings`,
      );
    } else {
      out.push(`  TokenAdapt half (${pct(t.fraction)} of the batch): f -> ${geo}${mx} -> g`);
    }
  }
  if (r.mixup.labelSmoothing !== null) out.push(`  label smoothing ${r.mixup.labelSmoothing}`);
  return out;
}

if (import.meta.main) {
  let code = 0;
  try {
    const a = parse(Deno.args);
    if (a === "help") console.log(USAGE);
    else {
      const r = await recipeOf(a);
      if (a.json) console.log(JSON.stringify(r, null, 2));
      else {
        const list = Array.isArray(r) ? r : [r];
        for (const x of list) {
          if ("run" in (x as object)) {
            const g = x as {
              arm: string;
              run: string;
              pretrain: RecipeDescription | null;
              finetune: RecipeDescription | null;
            };
            console.log(`arm ${g.arm} (${g.run}):`);
            if (g.pretrain) console.log(recipeLines(g.pretrain).map((l) => `  ${l}`).join("\n"));
            if (g.finetune) console.log(recipeLines(g.finetune).map((l) => `  ${l}`).join("\n"));
            if (!g.finetune) console.log("  pixel baseline (no token augmentation step)");
          } else console.log(recipeLines(x as RecipeDescription).join("\n"));
        }
      }
    }
  } catch (e) {
    if (e instanceof SyntaxError && !(e.message.includes("config file"))) {
      console.error(`error: ${e.message}\n\n${USAGE}`);
      code = 2;
    } else code = reportUserError(e);
  }
  Deno.exit(code);
}
