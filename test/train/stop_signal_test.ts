import assert from "node:assert/strict";
import { listenForStop, SIGNAL_EXIT_CODES } from "@lib/train";

Deno.test("listenForStop turns stop() true at SIGTERM, says so once, exits with 143", async () => {
  const lines: string[] = [];
  const s = listenForStop({ label: "t", print: (l) => lines.push(l) });
  try {
    assert.equal(s.stop(), false);
    assert.equal(s.exitCode, 0);
    Deno.kill(Deno.pid, "SIGTERM");
    for (let i = 0; i < 100 && !s.stop(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(s.stop(), true);
    assert.equal(s.signal, "SIGTERM");
    assert.equal(s.exitCode, SIGNAL_EXIT_CODES.SIGTERM);
    assert.equal(s.exitCode, 143);
    assert.deepEqual(lines, ["t: SIGTERM: saving a checkpoint after this step, then stopping"]);
  } finally {
    s.dispose();
    s.dispose();
  }
});
