import assert from "node:assert/strict";
import {
  checkResumeConfig,
  configChanges,
  RESUME_HARMLESS_KEYS,
  ResumeConflictError,
  runIsFinished,
  scheduledSteps,
} from "@lib/train";

const STORED = {
  seed: 0,
  batchSize: 16,
  accumIter: 1,
  epochs: 4,
  maxSteps: null as number | null,
  logEvery: 20,
  checkpointEvery: 0,
  evalEvery: 1,
  evalBatchSize: 256,
  keepCheckpoints: 1,
  betas: [0.9, 0.95],
  workers: 1,
  data: { train: "a.bin.gz", test: "t.bin.gz", limitTrain: null, limitTest: null },
  model: { depth: 2, embedDim: 32 },
};

Deno.test("configChanges lists differing leaves by dotted key, arrays whole", () => {
  const b = structuredClone(STORED);
  b.model.depth = 3;
  b.betas = [0.9, 0.999];
  assert.deepEqual(configChanges(STORED, b), [
    ["betas", [0.9, 0.95], [0.9, 0.999]],
    ["model.depth", 2, 3],
  ]);
  assert.deepEqual(configChanges(STORED, structuredClone(STORED)), []);
});

Deno.test("checkResumeConfig refuses a batch size change naming the key and both values", () => {
  const b = { ...structuredClone(STORED), batchSize: 8 };
  assert.throws(
    () => checkResumeConfig("runs/x", STORED, b, { step: 5 }),
    (e: Error) => {
      assert.ok(e instanceof ResumeConflictError);
      assert.equal(e.key, "batchSize");
      assert.equal(
        e.message,
        'Cannot resume "runs/x" with batchSize=8: the run has batchSize=16, and changing it ' +
          "changes the data order or schedule (not an exact resume); pass --force to resume " +
          "with it anyway",
      );
      return true;
    },
  );
  const forced = checkResumeConfig("runs/x", STORED, b, { step: 5, force: true });
  assert.deepEqual(forced.forced, [["batchSize", 16, 8]]);
});

Deno.test("checkResumeConfig refuses every key that shapes the numbers, allows the harmless ones", () => {
  const refused: [string, unknown][] = [
    ["seed", 1],
    ["accumIter", 2],
    ["epochs", 5],
    ["workers", 2],
    ["data.train", "b.bin.gz"],
    ["data.limitTrain", 10],
    ["model.embedDim", 64],
  ];
  for (const [key, v] of refused) {
    const b = structuredClone(STORED) as Record<string, unknown>;
    const parts = key.split(".");
    if (parts.length === 2) (b[parts[0]] as Record<string, unknown>)[parts[1]] = v;
    else b[key] = v;
    assert.throws(() => checkResumeConfig("r", STORED, b), ResumeConflictError, key);
  }
  const ok = {
    ...structuredClone(STORED),
    logEvery: 1,
    checkpointEvery: 5,
    keepCheckpoints: 2,
    evalEvery: 2,
    evalBatchSize: 64,
    data: { ...STORED.data, test: "u.bin.gz", limitTest: 10 },
  };
  const c = checkResumeConfig("r", STORED, ok);
  assert.deepEqual(c.harmless.map((x) => x[0]).sort(), Object.keys(RESUME_HARMLESS_KEYS).sort());
  assert.deepEqual(c.forced, []);
});

Deno.test("checkResumeConfig allows a maxSteps at or past the checkpoint, refuses one before it", () => {
  const at = (m: number | null) => ({ ...structuredClone(STORED), maxSteps: m });
  assert.equal(checkResumeConfig("r", at(10), at(null), { step: 10 }).harmless.length, 1);
  assert.equal(checkResumeConfig("r", at(10), at(20), { step: 10 }).harmless.length, 1);
  assert.equal(checkResumeConfig("r", STORED, at(10), { step: 10 }).harmless.length, 1);
  assert.throws(
    () => checkResumeConfig("r", STORED, at(3), { step: 10 }),
    /with maxSteps=3: the run has maxSteps=null, and its checkpoint is at step 10 already/,
  );
});

Deno.test("runIsFinished: the schedule's last step or the budget", () => {
  const c = { ...STORED, maxSteps: null };
  // 100 records, batch 16: 6 steps an epoch, 24 in 4 epochs
  assert.equal(scheduledSteps(c, 100), 24);
  assert.equal(runIsFinished({ step: 23, epoch: 3 }, c, 100), false);
  assert.equal(runIsFinished({ step: 24, epoch: 4 }, c, 100), true);
  assert.equal(runIsFinished({ step: 7, epoch: 1 }, { ...c, maxSteps: 7 }, 100), true);
  assert.equal(runIsFinished({ step: 7, epoch: 1 }, { ...c, maxSteps: 8 }, 100), false);
  assert.throws(() => scheduledSteps(c, 10), RangeError);
});
