/**
 * `deno task bench:tokens [--records N] [--side n] [--batch B] [--no-append]`
 *
 * Benchmark of the official-format token reader. Writes a synthetic dataset (default 100k
 * records x 32x32 codes; codes drawn from the parity fixture's histogram, about half of
 * them >= 255, with left/up neighbours repeated as in real token maps) with `TokenWriter`
 * to a temporary folder, then, in a fresh process so that its peak RSS is the reader's own,
 * measures: open time (index + streaming gunzip + per-record verification), open time
 * without verification, sequential and random-access batch decode throughput (codes/s), and
 * peak RSS. Appends a section to bench/results.md (machine, date, command, numbers).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { readSafetensorsFile, toInt32 } from "@lib/io";
import { Rng } from "@lib/random";
import { openTokenDataset, TokenWriter } from "@lib/tokens";

const RESULTS = new URL("./results.md", import.meta.url);
const FIXTURE = new URL("../../shared/parity/public/tokens_decoded.safetensors", import.meta.url);

interface ReadResults {
  openSeconds: number;
  openNoVerifySeconds: number;
  sequential: { batches: number; batch: number; seconds: number; codesPerSecond: number };
  random: { batches: number; batch: number; seconds: number; codesPerSecond: number };
  rssAfterOpenMiB: number;
  peakRssMiB: number;
  dataBytes: number;
  checksum: number;
}

function peakRssMiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return NaN;
}

/** The reader side, run in its own process. */
async function readPhase(path: string, batch: number, seed: number): Promise<ReadResults> {
  let t = performance.now();
  const ds = await openTokenDataset(path, { labelsPath: null });
  const openSeconds = (performance.now() - t) / 1000;
  const dataBytes = ds.data.length;
  const rssAfterOpenMiB = Deno.memoryUsage().rss / 2 ** 20;
  const nn = ds.codesPerRecord;
  const out = new Int32Array(batch * nn);
  const idx = new Int32Array(batch);
  let checksum = 0;
  // sequential: every record once, in order
  const seqBatches = Math.floor(ds.length / batch);
  t = performance.now();
  for (let b = 0; b < seqBatches; b++) {
    for (let j = 0; j < batch; j++) idx[j] = b * batch + j;
    ds.readBatch(idx, out);
    checksum = (checksum + out[b % out.length]) | 0;
  }
  const seqSeconds = (performance.now() - t) / 1000;
  // random access: as many records, uniformly drawn
  const rng = new Rng(seed);
  const perm = new Int32Array(seqBatches * batch);
  for (let i = 0; i < perm.length; i++) perm[i] = rng.int(0, ds.length);
  t = performance.now();
  for (let b = 0; b < seqBatches; b++) {
    ds.readBatch(perm.subarray(b * batch, (b + 1) * batch), out);
    checksum = (checksum + out[b % out.length]) | 0;
  }
  const rndSeconds = (performance.now() - t) / 1000;
  const codes = seqBatches * batch * nn;
  const peak = peakRssMiB(); // before the second open below, which holds a second copy
  t = performance.now();
  const again = await openTokenDataset(path, { verify: false, labelsPath: null });
  const openNoVerifySeconds = (performance.now() - t) / 1000;
  checksum = (checksum + again.length) | 0;
  return {
    openSeconds,
    openNoVerifySeconds,
    sequential: {
      batches: seqBatches,
      batch,
      seconds: seqSeconds,
      codesPerSecond: codes / seqSeconds,
    },
    random: { batches: seqBatches, batch, seconds: rndSeconds, codesPerSecond: codes / rndSeconds },
    rssAfterOpenMiB,
    peakRssMiB: peak,
    dataBytes,
    checksum,
  };
}

/** A 16-bit lookup table that maps uniform draws to codes with the fixture's frequencies. */
async function codeSampler(): Promise<Uint16Array> {
  const st = await readSafetensorsFile(decodeURIComponent(FIXTURE.pathname));
  const ids = toInt32(st.tensors.get("ids")!);
  const counts = new Float64Array(391);
  for (const c of ids) counts[c]++;
  const table = new Uint16Array(65536);
  let acc = 0, c = 0;
  for (let i = 0; i < 65536; i++) {
    const target = ((i + 0.5) / 65536) * ids.length;
    while (acc + counts[c] < target) acc += counts[c++];
    table[i] = c;
  }
  return table;
}

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
  } catch {
    return "?";
  }
}

function cpuModel(): string {
  try {
    const m = /model name\s*:\s*(.+)/.exec(Deno.readTextFileSync("/proc/cpuinfo"));
    if (m) return m[1].trim();
  } catch {
    // not Linux
  }
  return "unknown CPU";
}

/** Format markdown as `deno fmt` does in this repository, so the appended file stays clean. */
async function formatMarkdown(text: string): Promise<string> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "--line-width", "100", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const out = await p.output();
  if (!out.success) throw new Error(`deno fmt failed with status ${out.code}`);
  return new TextDecoder().decode(out.stdout);
}

function fmt(x: number, digits = 2): string {
  return x.toFixed(digits);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      records: { type: "string", default: "100000" },
      side: { type: "string", default: "32" },
      batch: { type: "string", default: "256" },
      read: { type: "string" },
      "no-append": { type: "boolean" },
    },
  });
  const batch = Number(values.batch);
  if (values.read !== undefined) {
    console.log(JSON.stringify(await readPhase(values.read, batch, 1)));
    return;
  }
  const records = Number(values.records), side = Number(values.side), nn = side * side;
  const loadStart = loadAverage();
  const dir = await Deno.makeTempDir({ prefix: "seitpp-bench-tokens-" });
  try {
    const path = `${dir}/bench-token.data.bin.gz`;
    const table = await codeSampler();
    const rng = new Rng(2024);
    const chunk = 1000;
    const codes = new Int32Array(chunk * nn);
    const labels = new Int32Array(chunk);
    let escaped = 0;
    let genSeconds = 0;
    const t0 = performance.now();
    const w = await TokenWriter.create(path, { gridSide: side, codebookSize: 391 });
    for (let done = 0; done < records; done += chunk) {
      const b = Math.min(chunk, records - done);
      const g = performance.now();
      for (let r = 0; r < b; r++) {
        const base = r * nn;
        for (let i = 0; i < nn; i++) {
          const u = rng.nextUint32();
          const x = i % side;
          // token maps repeat neighbours: 25% left, 10% up, else a fresh draw
          const rep = u >>> 24;
          let c: number;
          if (rep < 64 && x > 0) c = codes[base + i - 1];
          else if (rep < 90 && i >= side) c = codes[base + i - side];
          else c = table[u & 0xffff];
          codes[base + i] = c;
          if (c >= 255) escaped++;
        }
        labels[r] = rng.int(0, 1000);
      }
      genSeconds += (performance.now() - g) / 1000;
      await w.appendBatch(codes.subarray(0, b * nn), labels.subarray(0, b));
    }
    const summary = await w.close();
    const writeSeconds = (performance.now() - t0) / 1000 - genSeconds;
    console.error(
      `wrote ${records} records in ${fmt(writeSeconds)} s (+${fmt(genSeconds)} s generating)`,
    );
    const child = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        "--read",
        path,
        "--batch",
        String(batch),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!child.success) throw new Error(`reader process failed with status ${child.code}`);
    const r: ReadResults = JSON.parse(new TextDecoder().decode(child.stdout));
    const total = records * nn;
    const date = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const command = `deno task bench:tokens${Deno.args.length ? " " + Deno.args.join(" ") : ""}`;
    const raw = [
      `## tokens: official-format reader (bench/tokens_decode.ts), ${date}`,
      "",
      `- machine: ${cpuModel()}, ${navigator.hardwareConcurrency} logical cores (shared), ${Deno.build.os} ${Deno.build.arch}, Deno ${Deno.version.deno}, V8 ${Deno.version.v8}`,
      `- command: \`${command}\``,
      `- load average (1 min) at start / end: ${loadStart} / ${loadAverage()} on ${navigator.hardwareConcurrency} cores (a load above the core count means other jobs competed for the CPU and the timings are pessimistic)`,
      `- dataset: ${records} records x ${side}x${side} codes (K = 391, codes drawn from the parity fixture's histogram with neighbour repeats), ${
        fmt(100 * escaped / total, 1)
      }% of codes >= 255; ${fmt(summary.dataBytes / 2 ** 20, 1)} MiB decompressed, ${
        fmt(summary.compressedBytes / 2 ** 20, 1)
      } MiB gzip (level 6)`,
      "",
      "| measure | value |",
      "|---|---|",
      `| write (encode + gzip + index + labels) | ${fmt(writeSeconds)} s, ${
        fmt(total / writeSeconds / 1e6, 1)
      } M codes/s |`,
      `| open, verify every record (index + streaming gunzip + check) | ${fmt(r.openSeconds)} s |`,
      `| open without verification | ${fmt(r.openNoVerifySeconds)} s |`,
      `| sequential decode, batches of ${r.sequential.batch} | ${
        fmt(r.sequential.codesPerSecond / 1e6, 1)
      } M codes/s (${fmt(r.sequential.seconds)} s for ${r.sequential.batches} batches) |`,
      `| random-access decode, batches of ${r.random.batch} uniform indices | ${
        fmt(r.random.codesPerSecond / 1e6, 1)
      } M codes/s (${fmt(r.random.seconds)} s for ${r.random.batches} batches) |`,
      `| RSS after open | ${fmt(r.rssAfterOpenMiB, 0)} MiB |`,
      `| peak RSS of the reader process (VmHWM) | ${fmt(r.peakRssMiB, 0)} MiB |`,
    ].join("\n");
    const section = "\n" + await formatMarkdown(raw);
    console.log(section);
    if (!values["no-append"]) {
      let exists = true;
      try {
        await Deno.stat(RESULTS);
      } catch {
        exists = false;
      }
      const head = exists
        ? ""
        : "# Benchmark results\n\nAppend-only: each run adds a section (machine, date, command, numbers).\n";
      await Deno.writeTextFile(RESULTS, head + section, { append: true });
      console.error(`appended to ${decodeURIComponent(RESULTS.pathname)}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
