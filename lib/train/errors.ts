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
