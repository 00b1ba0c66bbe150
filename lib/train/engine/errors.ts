/**
 * Conditions that callers of the training loop catch.
 *
 * @module
 */

/**
 * The loss became NaN or infinite. The loop stops before the optimizer step, so the
 * parameters and the last checkpoint on disk are the last good ones.
 */
export class NonFiniteLossError extends Error {
  /** The loss value that was seen. */
  readonly loss: number;
  /** The optimizer step that was about to run (0-based count of completed steps). */
  readonly step: number;
  /** The epoch of that step. */
  readonly epoch: number;

  /**
   * @param loss the value seen
   * @param step completed optimizer steps so far
   * @param epoch the current epoch
   * @param detail extra context for the message (e.g. the run folder)
   */
  constructor(loss: number, step: number, epoch: number, detail = "") {
    super(
      `Loss is ${loss} at step ${step} (epoch ${epoch}); stopping before the optimizer step` +
        (detail ? `: ${detail}` : ""),
    );
    this.name = "NonFiniteLossError";
    this.loss = loss;
    this.step = step;
    this.epoch = epoch;
  }
}

/**
 * A run was asked to stop (its `stop` hook returned true, e.g. on SIGINT): it saved a
 * checkpoint at the position it reached and logged a `stopped` record, so that resuming
 * the run folder continues exactly.
 */
export class RunStoppedError extends Error {
  /** Completed optimizer steps when it stopped. */
  readonly step: number;
  /** The run folder. */
  readonly runDir: string;

  /**
   * @param step completed optimizer steps
   * @param runDir the run folder (holds the checkpoint to resume from)
   */
  constructor(step: number, runDir: string) {
    super(`Run "${runDir}" stopped on request after step ${step}; resume it from its checkpoint`);
    this.name = "RunStoppedError";
    this.step = step;
    this.runDir = runDir;
  }
}
