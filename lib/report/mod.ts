/**
 * Reporting: Jupyter display (Plotly figures, arquero tables, images, live progress), run logs
 * as tables, static figure export (SVG/PNG through headless Chromium), standalone HTML reports,
 * and the headless notebook runner.
 *
 * @module
 */
export * from "./jupyter.ts";
export * from "./plotly_js.ts";
export * from "./figure.ts";
export * from "./table.ts";
export * from "./image.ts";
export * from "./image_columns.ts";
export * from "./overlay.ts";
export * from "./follow_run.ts";
export * from "./grid_progress.ts";
export * from "./grid_table.ts";
export * from "./progress.ts";
export * from "./run_log.ts";
export * from "./chromium.ts";
export * from "./export.ts";
export * from "./html_report.ts";
export * from "./paper_figures.ts";
export * from "./intervals.ts";
export * from "./effects.ts";
export * from "./variant_effects.ts";
export * from "./notebooks.ts";
export * from "./notebook_html.ts";
export * from "./jupyter_server.ts";
export * from "./notebook_frontend.ts";
export * from "./tokenadapt_curve.ts";
