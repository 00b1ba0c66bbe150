import assert from "node:assert/strict";
import * as aq from "arquero";
import { decodePng } from "@lib/io";
import {
  canonicalSvg,
  Chromium,
  type Figure,
  figure,
  FigureExporter,
  heatmapTrace,
  histogramTrace,
  htmlReport,
  imageView,
  lineTrace,
  type Page,
  scatterTrace,
  tableView,
} from "@lib/report";

const lossFigure = (): Figure =>
  figure([
    lineTrace([1, 10, 100, 1000], [2, 1.5, 1.1, 0.9], {
      name: "loss",
      yErr: [0.1, 0.1, 0.05, 0.02],
    }),
    scatterTrace([3, 300], [1.8, 1.0], { name: "runs" }),
  ], { title: "Loss", xTitle: "step", yTitle: "loss", logX: true });

const heatFigure = (): Figure => figure([heatmapTrace([[1, 2], [3, 4]])], { title: "Heat" });

/** Waits until the page has `n` drawn Plotly figures; returns what is drawn. */
function drawn(page: Page, n: number): Promise<Record<string, number>> {
  return page.evaluate(`new Promise((resolve, reject) => {
    const t0 = Date.now();
    (function poll() {
      const q = (s) => document.querySelectorAll(s).length;
      const r = {
        plots: q('.js-plotly-plot .main-svg .cartesianlayer'),
        traces: q('.js-plotly-plot .scatterlayer .trace'),
        points: q('.js-plotly-plot .scatterlayer .point'),
        errorbars: q('.js-plotly-plot .errorbar'),
        bars: q('.js-plotly-plot .barlayer .point'),
        heatmaps: q('.js-plotly-plot .heatmaplayer .hm'),
        tables: q('table'),
        images: q('img'),
      };
      if (r.plots >= ${n}) resolve(r);
      else if (Date.now() - t0 > 20000) reject(new Error('not drawn: ' + JSON.stringify(r)));
      else setTimeout(poll, 50);
    })();
  })`);
}

Deno.test("figure export and HTML rendering in one headless Chromium session", async (t) => {
  const ex = await FigureExporter.start();
  try {
    let first = "";
    await t.step(
      "the same spec exports to byte-identical SVG, also after other figures",
      async () => {
        first = await ex.svg(lossFigure());
        await ex.svg(heatFigure());
        const again = await ex.svg(lossFigure());
        assert.equal(again, first);
        assert.ok(first.startsWith("<svg"));
        assert.ok(first.includes('class="scatterlayer mlayer"'));
        assert.ok(first.includes(">Loss<"));
        assert.equal(canonicalSvg(first), first);
      },
    );

    await t.step("a second browser session exports the same bytes", async () => {
      const ex2 = await FigureExporter.start();
      try {
        assert.equal(await ex2.svg(lossFigure()), first);
      } finally {
        await ex2.close();
      }
    });

    await t.step("PNG export has the figure's size times the scale", async () => {
      const png = decodePng(await ex.png(lossFigure()));
      assert.deepEqual(png.shape.slice(0, 2), [450, 700]);
      const big = decodePng(await ex.png(heatFigure(), { width: 300, height: 200, scale: 2 }));
      assert.deepEqual(big.shape.slice(0, 2), [400, 600]);
      await assert.rejects(() => ex.png(heatFigure(), { width: 0 }), RangeError);
    });

    await t.step("write picks the format from the extension", async () => {
      const dir = await Deno.makeTempDir();
      try {
        await ex.write(lossFigure(), `${dir}/sub/loss.svg`);
        await ex.write(lossFigure(), `${dir}/loss.png`);
        assert.equal(await Deno.readTextFile(`${dir}/sub/loss.svg`), first);
        const png = await Deno.readFile(`${dir}/loss.png`);
        assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
        await assert.rejects(() => ex.write(lossFigure(), `${dir}/loss.pdf`), TypeError);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });

    await t.step("a figure's notebook HTML (plotly.js inlined) draws its traces", async () => {
      const page = await ex.browser.newPage();
      const html = lossFigure().toHtml({ includePlotlyJs: true });
      await page.setContent(`<!DOCTYPE html><html><body>${html}</body></html>`);
      const r = await drawn(page, 1);
      assert.equal(r.traces, 2);
      assert.equal(r.errorbars, 4);
      assert.equal(r.points, 2); // the scatter trace; the line has no markers
      await page.close();
    });

    await t.step(
      "a standalone HTML report draws every figure and shows tables and images",
      async () => {
        const page = await ex.browser.newPage();
        const img = {
          dtype: "uint8" as const,
          shape: [2, 2],
          data: new Uint8Array([0, 255, 255, 0]),
        };
        const report = htmlReport([
          { heading: "Loss", text: "Two figures, a table and an image." },
          lossFigure(),
          figure([histogramTrace([1, 2, 2, 3, 3, 3])], { title: "Hist" }),
          heatFigure(),
          tableView(aq.table({ a: [1, 2], b: ["x", "y"] })),
          imageView(img),
        ], { title: "Report" });
        assert.equal((report.match(/plotly\.js v3\.7\.0/g) ?? []).length, 1);
        await page.setContent(report);
        const r = await drawn(page, 3);
        assert.equal(r.traces, 2);
        assert.equal(r.bars, 3);
        assert.equal(r.heatmaps, 1);
        assert.equal(r.tables, 1);
        assert.equal(r.images, 1);
        await page.close();
      },
    );
  } finally {
    await ex.close();
  }
});

Deno.test("Chromium.launch names the executable it cannot start", async () => {
  await assert.rejects(
    () => Chromium.launch({ executable: "/nonexistent/chromium" }),
    (e: Error) => e.name === "ChromiumError" && e.message.includes('"/nonexistent/chromium"'),
  );
});
