/**
 * A data-parallel training worker (see ./parallel.ts): its own tfjs backend and model
 * replica; per step it takes the parameters and one shard of the micro-batch and
 * answers the shard's weighted loss and gradients. Errors are answered as messages
 * (name, message, stack) so the main thread rethrows them with the same class.
 *
 * Started by `DataParallel.start`, never imported.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendRequest, initBackend } from "../../backend/mod.ts";
import {
  buildReplica,
  entryInfo,
  type FromWorker,
  packGrads,
  type ReplicableModel,
  shardLoss,
  type ToWorker,
  unpackParams,
} from "./_parallel_shard.ts";

interface WorkerScope {
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  close(): void;
}

const scope = globalThis as unknown as WorkerScope;
let model: ReplicableModel | null = null;

function requireModel(): ReplicableModel {
  if (model === null) throw new TypeError("The data-parallel worker got a step before init");
  return model;
}

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case "init": {
      await initBackend({ backend: msg.backend as BackendRequest });
      model = buildReplica(msg.replica);
      const mine = entryInfo(model);
      const want = msg.entries;
      const describe = (e: { name: string; shape: number[]; trainable: boolean }) =>
        `${e.name} [${e.shape}]${e.trainable ? "" : " (frozen)"}`;
      const bad = mine.length !== want.length
        ? `${mine.length} parameters, the main model ${want.length}`
        : mine.map((e, i) => [describe(e), describe(want[i])]).find(([a, b]) => a !== b)
          ?.join(" where the main model has ");
      if (bad !== undefined) {
        throw new TypeError(`Cannot replicate the model in a worker: the replica has ${bad}`);
      }
      scope.postMessage({ type: "ready", id: msg.id, numTensors: tf.memory().numTensors });
      return;
    }
    case "step": {
      const m = requireModel();
      if (msg.params !== null) unpackParams(m, msg.params);
      const { value, grads } = m.params.valueAndGrads(() => shardLoss(m, msg.shard));
      const loss = (value.dataSync() as Float32Array)[0];
      value.dispose();
      const packed = packGrads(m, grads);
      scope.postMessage(
        {
          type: "grads",
          id: msg.id,
          loss,
          grads: packed.data,
          present: packed.present,
          numTensors: tf.memory().numTensors,
        },
        [packed.data.buffer as ArrayBuffer, packed.present.buffer as ArrayBuffer],
      );
      return;
    }
    case "memory":
      scope.postMessage({ type: "memory", id: msg.id, numTensors: tf.memory().numTensors });
      return;
    case "close":
      model?.dispose();
      model = null;
      scope.postMessage({ type: "closed", id: msg.id });
      scope.close();
  }
}

// Messages are handled one at a time, in order.
let queue: Promise<void> = Promise.resolve();
scope.onmessage = (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  queue = queue.then(() => handle(msg)).catch((err: unknown) => {
    const error = err instanceof Error ? err : new Error(String(err));
    scope.postMessage({
      type: "error",
      id: msg.id,
      name: error.name,
      message: error.message,
      stack: error.stack ?? "",
    });
  });
};
