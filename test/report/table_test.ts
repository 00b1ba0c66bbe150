import assert from "node:assert/strict";
import * as aq from "arquero";
import { $display, saveTable, tableView } from "@lib/report";

const runs = () =>
  aq.table({ method: ["pixels", "SeiT++"], storage_gb: [140, 1.4], top1: [0.7791234, 0.778] });

Deno.test("a table view's mimebundle has html, markdown and aligned text", () => {
  const v = tableView(runs(), { caption: "Results" });
  const b = v[$display]();
  assert.deepEqual(Object.keys(b).sort(), ["text/html", "text/markdown", "text/plain"]);
  const html = b["text/html"] as string;
  assert.match(html, /^<p><b>Results<\/b><\/p>\n<table>/);
  assert.equal((html.match(/<tr>/g) ?? []).length, 3);
  assert.ok(html.includes("SeiT++"));
  assert.ok((b["text/markdown"] as string).includes("|method|storage_gb|top1|"));
  assert.equal(
    b["text/plain"],
    [
      "Results",
      "method  storage_gb    top1",
      "------  ----------  ------",
      "pixels         140  0.7791",
      "SeiT++         1.4   0.778",
    ].join("\n"),
  );
  assert.equal(String(v), b["text/plain"]);
});

Deno.test("a table view shows at most `limit` rows and counts the rest", () => {
  const t = aq.table({
    step: Array.from({ length: 12 }, (_, i) => i),
    lr: Array(12).fill(1.25e-5),
  });
  const v = tableView(t, { limit: 3 });
  const text = String(v).split("\n");
  assert.equal(text.length, 2 + 3 + 1);
  assert.equal(text[2], "   0  0.0000125");
  assert.equal(text.at(-1), "... 9 more rows (12 in all)");
  assert.ok(v.toHtml().includes("9 more rows (12 in all)"));
  assert.equal((v.toHtml().match(/<tr>/g) ?? []).length, 4);
  assert.throws(() => tableView(t, { limit: -1 }), RangeError);
});

Deno.test("saveTable writes CSV with all digits and a markdown table", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { csv, md } = await saveTable(runs(), `${dir}/results`);
    assert.equal(
      await Deno.readTextFile(csv),
      "method,storage_gb,top1\npixels,140,0.7791234\nSeiT++,1.4,0.778\n",
    );
    const m = await Deno.readTextFile(md);
    assert.ok(m.startsWith("|method|storage_gb|top1|"));
    assert.match(m, /\|pixels\|140(\.0)?\|0\.7791\|/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
