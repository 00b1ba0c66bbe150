/**
 * Stop on SIGINT / SIGTERM with a checkpoint: the one mechanism the training tasks and the
 * grid's run processes share. A signal only raises a flag; the training run asks the flag
 * after every optimizer step (`RunSetup.stop`), saves a checkpoint there, logs a `stopped`
 * record and throws `RunStoppedError`, so `--resume` continues exactly. A second SIGINT
 * (Ctrl-C twice) exits at once, as a shell user expects.
 *
 * @module
 */

/** Exit status of a process stopped by a signal: 128 + the signal number (shell convention). */
export const SIGNAL_EXIT_CODES: Readonly<Record<"SIGINT" | "SIGTERM", number>> = {
  SIGINT: 130,
  SIGTERM: 143,
};

/** What {@linkcode listenForStop} returns. */
export interface StopListener {
  /** @returns whether SIGINT or SIGTERM was received (pass as a run's `stop` hook) */
  stop: () => boolean;
  /** The first signal received, or `null`. */
  readonly signal: "SIGINT" | "SIGTERM" | null;
  /** The exit status for the signal received (130 / 143), or 0 when none was. */
  readonly exitCode: number;
  /** Remove the listeners. */
  dispose(): void;
}

/** Options of {@linkcode listenForStop}. */
export interface ListenForStopOptions {
  /** Said once, at the first signal (e.g. `pretrain: SIGINT: saving a checkpoint...`). */
  print?: (line: string) => void;
  /** A prefix for that line, e.g. the task or run id. @default {"stop"} */
  label?: string;
  /** Exit at once on a second SIGINT. @default {true} */
  exitOnSecondInterrupt?: boolean;
}

/**
 * Listen for SIGINT and SIGTERM; the listener's `stop()` turns true at the first one.
 *
 * @param options where the notice goes, its label
 * @returns the listener (call `dispose` when the run is over)
 *
 * @example
 * ```ts ignore
 * const s = listenForStop({ label: "pretrain" });
 * try {
 *   await pretrain({ ...options, stop: s.stop });
 * } catch (e) {
 *   if (e instanceof RunStoppedError) Deno.exit(s.exitCode);
 *   throw e;
 * } finally {
 *   s.dispose();
 * }
 * ```
 */
export function listenForStop(options: ListenForStopOptions = {}): StopListener {
  const print = options.print ?? ((l: string) => console.error(l));
  const label = options.label ?? "stop";
  const exitOnSecond = options.exitOnSecondInterrupt ?? true;
  let received: "SIGINT" | "SIGTERM" | null = null;
  const handler = (sig: "SIGINT" | "SIGTERM") => () => {
    if (received !== null) {
      if (sig === "SIGINT" && exitOnSecond) {
        print(`${label}: second SIGINT: exiting now (the last checkpoint on disk is kept)`);
        Deno.exit(SIGNAL_EXIT_CODES.SIGINT);
      }
      return;
    }
    received = sig;
    print(`${label}: ${sig}: saving a checkpoint after this step, then stopping`);
  };
  const onInt = handler("SIGINT"), onTerm = handler("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  let disposed = false;
  return {
    stop: () => received !== null,
    get signal() {
      return received;
    },
    get exitCode() {
      return received === null ? 0 : SIGNAL_EXIT_CODES[received];
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      Deno.removeSignalListener("SIGINT", onInt);
      Deno.removeSignalListener("SIGTERM", onTerm);
    },
  };
}

let lastTurn = 0;

/**
 * Let the event loop turn (so that a signal's listener runs) when it has not for `minMs`:
 * a training loop whose awaits all resolve as microtasks would otherwise see a signal only
 * at its next file write. Costs one timer turn (about 1 ms) at most every `minMs`.
 *
 * @param minMs the least time between two turns, ms
 */
export async function letSignalsIn(minMs = 50): Promise<void> {
  if (performance.now() - lastTurn < minMs) return;
  await new Promise((r) => setTimeout(r, 0));
  lastTurn = performance.now();
}
