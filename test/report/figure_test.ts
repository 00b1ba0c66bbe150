import assert from "node:assert/strict";
import {
  $display,
  barTrace,
  display,
  Figure,
  figure,
  heatmapTrace,
  histogramTrace,
  inJupyter,
  lineTrace,
  plainText,
  plotlyJsSource,
  plotlyJsVersion,
  scatterTrace,
  setPlotlyEmbedding,
} from "@lib/report";

const PLOTLY_MARKER = "plotly.js v3.7.0";

function sampleFigure(): Figure {
  return figure([
    lineTrace([1, 10, 100], [2, 1.5, 1], { name: "loss", yErr: [0.1, 0.1, 0.05] }),
    scatterTrace([3, 30], [1.8, 1.2], { name: "runs" }),
  ], { title: "Loss", xTitle: "step", yTitle: "loss", logX: true });
}

Deno.test("the pinned plotly.js is read from node_modules and reports version 3.7.0", () => {
  assert.equal(plotlyJsVersion(), "3.7.0");
  assert.ok(plotlyJsSource().length > 1_000_000);
});

Deno.test("a figure's mimebundle has plotly json, html with plotly.js inlined (no http script src) and text", () => {
  setPlotlyEmbedding("every");
  try {
    const fig = sampleFigure();
    const b = fig[$display]();
    assert.deepEqual(Object.keys(b).sort(), [
      "application/vnd.plotly.v1+json",
      "text/html",
      "text/plain",
    ]);
    assert.deepEqual(b["application/vnd.plotly.v1+json"], fig.spec);
    const html = b["text/html"] as string;
    assert.ok(html.includes(PLOTLY_MARKER), "plotly.js source inlined");
    assert.ok(!/<script[^>]*\bsrc\s*=/i.test(html), "no external script");
    assert.ok(!/https?:\/\/cdn/i.test(html.replace(plotlyJsSource(), "")), "no CDN reference");
    assert.ok(html.includes("Plotly.newPlot"));
    // Still inlined the second time under "every".
    assert.ok((fig[$display]()["text/html"] as string).includes(PLOTLY_MARKER));
  } finally {
    setPlotlyEmbedding("once");
  }
});

Deno.test("'once' embedding inlines plotly.js in the first figure only, later ones wait for it", () => {
  setPlotlyEmbedding("once");
  const first = sampleFigure()[$display]()["text/html"] as string;
  const second = sampleFigure()[$display]()["text/html"] as string;
  assert.ok(first.includes(PLOTLY_MARKER));
  assert.ok(!second.includes(PLOTLY_MARKER));
  assert.ok(second.length < 10_000);
  assert.ok(second.includes("window.Plotly"));
  setPlotlyEmbedding("once");
  assert.ok((sampleFigure()[$display]()["text/html"] as string).includes(PLOTLY_MARKER));
  assert.throws(() => setPlotlyEmbedding("cdn" as "once"), TypeError);
});

Deno.test("outside the kernel a figure falls back to a text summary", async () => {
  assert.equal(inJupyter(), false);
  const fig = sampleFigure();
  const text = String(fig);
  assert.equal(
    text,
    [
      'Figure "Loss" [x: step (log), y: loss]',
      '  scatter lines "loss" 3 points, x 1..100, y 1..2',
      '  scatter markers "runs" 2 points, x 3..30, y 1.2..1.8',
    ].join("\n"),
  );
  assert.equal(plainText(fig), text);
  const logged: string[] = [];
  const orig = console.log;
  console.log = (s: string) => logged.push(s);
  try {
    await display(fig);
  } finally {
    console.log = orig;
  }
  assert.deepEqual(logged, [text]);
  await assert.rejects(() => display(fig, { update: true }), TypeError);
});

Deno.test("figure builders: stable uids, log axes, error bars, NaN as gaps", () => {
  const fig = figure([
    lineTrace([1, 2, 3], [1, NaN, 3]),
    histogramTrace([1, 2, 2, 3], { nbins: 3 }),
    barTrace(["a", "b"], [0.5, 0.75], { yErr: [0.01, 0.02], text: "auto" }),
    heatmapTrace([[1, 2], [3, 4]], { x: ["p", "q"], y: ["r", "s"] }),
  ], { logY: true, width: 500, height: 300 });
  assert.deepEqual(fig.spec.data.map((t) => t.uid), ["t0", "t1", "t2", "t3"]);
  assert.deepEqual(fig.spec.data[0].y, [1, null, 3]);
  assert.equal((fig.spec.layout.yaxis as { type: string }).type, "log");
  assert.equal(fig.width, 500);
  assert.equal(fig.height, 300);
  assert.deepEqual(fig.spec.data[2].text, ["0.5", "0.75"]);
  assert.deepEqual((fig.spec.data[2].error_y as { array: number[] }).array, [0.01, 0.02]);
  assert.equal(JSON.stringify(fig), JSON.stringify(fig.spec));
  // A given uid is kept.
  assert.equal(
    new Figure({ data: [{ type: "bar", uid: "mine" }], layout: {} }).spec.data[0].uid,
    "mine",
  );
});

Deno.test("figure builders refuse mismatched or non-numeric input with named errors", () => {
  assert.throws(() => lineTrace([1, 2], [1]), {
    name: "RangeError",
    message: 'Cannot plot line "": x has 2 values, y has 1',
  });
  assert.throws(() => lineTrace([1, 2], [1, 2], { name: "acc", yErr: [1] }), {
    name: "RangeError",
    message: 'Cannot plot error bars of "acc": 1 values for 2 points',
  });
  assert.throws(() => scatterTrace([1], ["x" as unknown as number]), {
    name: "TypeError",
    message: "Cannot plot scatter y: element 0 is string, expected a number",
  });
  assert.throws(() => heatmapTrace([[1, 2], [3]]), {
    name: "RangeError",
    message: "Cannot plot heatmap: row 1 has 1 values, row 0 has 2",
  });
  assert.throws(() => histogramTrace([1], { nbins: 0 }), RangeError);
  assert.throws(() => new Figure({ data: [{} as never], layout: {} }), {
    name: "TypeError",
    message: 'Cannot build a figure: trace 0 has no string "type"',
  });
});
