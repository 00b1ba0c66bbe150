import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  activeNativeKernels,
  buildNativeKernels,
  describeBackend,
  initBackend,
  type NativeKernels,
  nativeOpsActive,
  setNativeKernels,
} from "@lib/backend";
import { attention, gelu, layerNorm, softmaxCrossEntropyRows } from "@lib/models";
import { Rng } from "@lib/random";
import { setAttentionChunkFloats } from "../../lib/backend/native_ops.ts";

// The C kernels need a BLAS (they are used on the wasm backend's BLAS path) and a C
// compiler (CI installs Debian's gcc and libopenblas0-pthread). With SEITPP_BLAS=off or
// SEITPP_NATIVE_KERNELS=off the comparisons are skipped; the fallback tests still run.
const skip = Deno.env.get("SEITPP_BLAS") === "off" ||
  Deno.env.get("SEITPP_NATIVE_KERNELS") === "off";
const ompWaitPolicyBefore = Deno.env.get("OMP_WAIT_POLICY");

function values(n: number, rng: Rng, scale = 1, shift = 0): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * scale + shift);
}

type Outputs = Float32Array[];

/** The same computation on cpu (plain tfjs ops), wasm + JS kernels and wasm + C kernels. */
async function threeWays(
  run: () => Promise<Outputs>,
): Promise<{ cpu: Outputs; js: Outputs; c: Outputs }> {
  await initBackend({ backend: "cpu" });
  const cpu = await run();
  const info = await initBackend({ backend: "wasm" });
  const native = activeNativeKernels();
  assert.ok(native !== undefined && nativeOpsActive(), `no C kernels: ${describeBackend(info)}`);
  try {
    setNativeKernels(undefined);
    const before = tf.memory().numTensors;
    const js = await run();
    setNativeKernels(native);
    const c = await run();
    assert.equal(tf.memory().numTensors, before, "leaked tensors");
    return { cpu, js, c };
  } finally {
    setNativeKernels(native);
  }
}

function close(
  label: string,
  got: Outputs,
  want: Outputs,
  atol: number,
  rtol: number,
): void {
  assert.equal(got.length, want.length, label);
  for (let k = 0; k < want.length; k++) {
    assert.equal(got[k].length, want[k].length, `${label}, output ${k}: length`);
    for (let i = 0; i < want[k].length; i++) {
      const w = want[k][i];
      assert.ok(
        Math.abs(got[k][i] - w) <= atol + rtol * Math.abs(w),
        `${label}, output ${k} element ${i}: ${got[k][i]} vs ${w}`,
      );
    }
  }
}

/** C vs JS tightly, both vs plain tfjs on cpu within the parity-like tolerance. */
function check(name: string, r: { cpu: Outputs; js: Outputs; c: Outputs }, tight = 2e-5) {
  close(`${name}: C vs JS kernels`, r.c, r.js, tight, tight);
  close(`${name}: C kernels vs cpu`, r.c, r.cpu, 1e-5, 1e-4);
  close(`${name}: JS kernels vs cpu`, r.js, r.cpu, 1e-5, 1e-4);
}

async function readAll(ts: tf.Tensor[]): Promise<Outputs> {
  const out = (await Promise.all(ts.map((t) => t.data()))) as Float32Array[];
  tf.dispose(ts);
  return out;
}

Deno.test({
  name: "C GELU matches the JS kernel and plain tfjs: value and gradient, odd shape, threaded",
  ignore: skip,
  fn: async () => {
    // 173 x 301 = 52073 values: above the size where the C kernels use their threads
    const shape: [number, number] = [173, 301];
    const run = () => {
      const x = tf.tensor2d(values(173 * 301, new Rng(1), 7), shape);
      const w = tf.tensor2d(values(173 * 301, new Rng(2)), shape);
      const { value, grad } = tf.valueAndGrad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), w)))(x);
      const y = gelu(x);
      tf.dispose([x, w]);
      return readAll([y, grad, value]);
    };
    check("GELU", await threeWays(run));
  },
});

Deno.test({
  name: "C LayerNorm matches the JS kernel and plain tfjs: value and its three gradients",
  ignore: skip,
  fn: async () => {
    for (const [rows, c] of [[517, 97], [3, 5], [1001, 33]] as const) {
      const run = () => {
        const x = tf.tensor2d(values(rows * c, new Rng(3), 4, 2), [rows, c]);
        const g = tf.tensor1d(values(c, new Rng(4)));
        const b = tf.tensor1d(values(c, new Rng(5)));
        const w = tf.tensor2d(values(rows * c, new Rng(6)), [rows, c]);
        const f = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5), w));
        const { value, grads } = tf.valueAndGrads(f)([x, g, b]);
        const y = layerNorm(x, g, b, 1e-5);
        tf.dispose([x, g, b, w]);
        return readAll([y, value, ...grads]);
      };
      // dgamma/dbeta sum over 1000 rows: the two kernels add in a different order
      check(`LayerNorm [${rows}, ${c}]`, await threeWays(run), 1e-4);
    }
  },
});

Deno.test({
  name: "C softmax cross-entropy matches the JS kernel and plain tfjs, with and without smoothing",
  ignore: skip,
  fn: async () => {
    for (const [rows, k, smoothing] of [[331, 157, 0], [331, 157, 0.1], [7, 1000, 0.2]] as const) {
      const run = () => {
        const x = tf.tensor2d(values(rows * k, new Rng(7), 9), [rows, k]);
        const t = tf.tensor1d(
          Int32Array.from({ length: rows }, (_, i) => (i * 31 + 5) % k),
          "int32",
        );
        const w = tf.tensor1d(values(rows, new Rng(8)));
        const f = (x: tf.Tensor) =>
          tf.sum(tf.mul(softmaxCrossEntropyRows(x as tf.Tensor2D, t, smoothing), w));
        const { value, grad } = tf.valueAndGrad(f)(x);
        const loss = softmaxCrossEntropyRows(x, t, smoothing);
        tf.dispose([x, t, w]);
        return readAll([loss, value, grad]);
      };
      check(`cross-entropy [${rows}, ${k}] s=${smoothing}`, await threeWays(run));
    }
  },
});

Deno.test({
  name: "C cross-entropy refuses a target outside [0, K) before touching memory",
  ignore: skip,
  fn: async () => {
    await initBackend({ backend: "wasm" });
    assert.ok(activeNativeKernels() !== undefined);
    const x = tf.zeros([4, 3]) as tf.Tensor2D;
    const t = tf.tensor1d([0, 1, 3, 2], "int32");
    assert.throws(() => softmaxCrossEntropyRows(x, t), /class 3 \(row 2\) of 3 logits/);
    tf.dispose([x, t]);
  },
});

Deno.test({
  name: "C attention softmax passes match the JS kernel and plain tfjs: output and qkv gradient, " +
    "with and without dropout, sequence lengths not a multiple of anything",
  ignore: skip,
  fn: async () => {
    for (
      const [batch, seq, heads, hd, dropout] of [
        [5, 53, 3, 7, 0],
        [5, 53, 3, 7, 0.25],
        [2, 1, 1, 4, 0],
        [3, 97, 2, 5, 0.5],
      ] as const
    ) {
      const c = heads * hd;
      const run = () => {
        const qkv = tf.tensor2d(values(batch * seq * 3 * c, new Rng(9), 2), [batch * seq, 3 * c]);
        const w = tf.tensor2d(values(batch * seq * c, new Rng(10)), [batch * seq, c]);
        const rng = new Rng(11);
        const f = (x: tf.Tensor) =>
          tf.sum(tf.mul(attention(x as tf.Tensor2D, batch, seq, heads, { dropout, rng }), w));
        const { value, grad } = tf.valueAndGrad(f)(qkv);
        tf.dispose([qkv, w]);
        return readAll([value, grad]);
      };
      check(`attention B=${batch} N=${seq} H=${heads} hd=${hd} p=${dropout}`, await threeWays(run));
      // again in chunks of 2 blocks and a remainder (one C call per chunk)
      const previous = setAttentionChunkFloats(2 * seq * seq);
      try {
        check(
          `attention B=${batch} N=${seq} H=${heads} hd=${hd} p=${dropout}, chunks of 2 blocks`,
          await threeWays(run),
        );
      } finally {
        setAttentionChunkFloats(previous);
      }
    }
  },
});

/** A script run in a child process: a few training steps through every fused op. */
const TRAIN_SCRIPT = `
  import * as tf from "@tensorflow/tfjs";
  import { describeBackend, initBackend } from "@lib/backend";
  import { attention, gelu, layerNorm, softmaxCrossEntropyRows } from "@lib/models";
  import { Rng } from "@lib/random";
  const info = await initBackend({ backend: "wasm" });
  await initBackend({ backend: "wasm" }); // a second init must not repeat the line
  const rng = new Rng(1);
  const init = (shape) => tf.variable(tf.tensor(rng.normalArray(shape[0] * shape[1]), shape).mul(0.2));
  const [B, N, C, K] = [4, 9, 12, 5];
  const wqkv = init([C, 3 * C]), w1 = init([C, 2 * C]), w2 = init([2 * C, K]);
  const g = tf.variable(tf.ones([C])), b = tf.variable(tf.zeros([C]));
  const x = tf.tensor2d(rng.normalArray(B * N * C), [B * N, C]);
  const t = tf.tensor1d(Int32Array.from({ length: B * N }, (_, i) => i % K), "int32");
  const opt = tf.train.adam(0.01);
  const losses = [];
  for (let step = 0; step < 20; step++) {
    const loss = opt.minimize(() => {
      const h = layerNorm(x, g, b, 1e-6);
      const a = attention(tf.matMul(h, wqkv), B, N, 3, { dropout: 0.1, rng });
      return softmaxCrossEntropyRows(tf.matMul(gelu(tf.matMul(a, w1)), w2), t, 0.1).mean();
    }, true);
    losses.push((await loss.data())[0]);
    loss.dispose();
  }
  console.log(describeBackend(info));
  console.log("losses", JSON.stringify([losses[0], losses[losses.length - 1]]));
`;

async function child(env: Record<string, string>) {
  const file = await Deno.makeTempFile({
    dir: new URL("..", import.meta.url).pathname,
    suffix: ".ts",
  });
  try {
    await Deno.writeTextFile(file, TRAIN_SCRIPT);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const [first, last] = JSON.parse(/losses (.*)/.exec(stdout)?.[1] ?? "null") as number[];
    assert.ok(last < first, `training did not lower the loss: ${first} -> ${last}`);
    return { stdout, stderr, lines: stderr.split("\n").filter((l) => l.includes("JS kernels")) };
  } finally {
    await Deno.remove(file);
  }
}

Deno.test({
  name:
    "no C compiler (SEITPP_CC=/nonexistent): the JS kernels run, one line says why, training runs",
  ignore: Deno.env.get("SEITPP_BLAS") === "off",
  fn: async () => {
    const cache = await Deno.makeTempDir();
    try {
      const r = await child({ SEITPP_CC: "/nonexistent", SEITPP_CACHE_DIR: cache });
      assert.equal(r.lines.length, 1, r.stderr);
      assert.match(r.lines[0], /no C compiler found \(tried \/nonexistent from SEITPP_CC/);
      assert.match(r.stdout, /fused ops on JS kernels.*no C compiler found/);
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  },
});

Deno.test({
  name: "SEITPP_NATIVE_KERNELS=off: the JS kernels run and one line says so",
  ignore: Deno.env.get("SEITPP_BLAS") === "off",
  fn: async () => {
    const r = await child({ SEITPP_NATIVE_KERNELS: "off" });
    assert.equal(r.lines.length, 1, r.stderr);
    assert.match(r.lines[0], /turned off \(SEITPP_NATIVE_KERNELS=off\)/);
  },
});

Deno.test({
  name: "a compiler that fails: the JS kernels run, the line quotes its error, nothing is cached",
  ignore: Deno.env.get("SEITPP_BLAS") === "off",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const cc = `${dir}/badcc`;
      await Deno.writeTextFile(
        cc,
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "badcc 1.0"; exit 0; fi\n' +
          'echo "kernels.c:1: error: this compiler refuses" >&2\nexit 1\n',
      );
      await Deno.chmod(cc, 0o755);
      const r = await child({ SEITPP_CC: cc, SEITPP_CACHE_DIR: `${dir}/cache` });
      assert.equal(r.lines.length, 1, r.stderr);
      assert.match(r.lines[0], /failed to compile .*error: this compiler refuses/);
      const left = [...Deno.readDirSync(`${dir}/cache`)].map((e) => e.name);
      assert.deepEqual(left, [], `files left in the cache: ${left}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "two processes building at once: both load, one library in the cache, no temporary files",
  ignore: Deno.env.get("SEITPP_BLAS") === "off" || skip,
  fn: async () => {
    const cache = await Deno.makeTempDir();
    let paths: string[] = [];
    try {
      const script = `
        import { buildNativeKernels } from "@lib/backend";
        const r = await buildNativeKernels();
        if ("reason" in r) throw new Error(r.reason);
        console.log(r.path);
      `;
      const file = await Deno.makeTempFile({
        dir: new URL("..", import.meta.url).pathname,
        suffix: ".ts",
      });
      await Deno.writeTextFile(file, script);
      try {
        const runs = await Promise.all([0, 1].map(() =>
          new Deno.Command(Deno.execPath(), {
            args: ["run", "-A", file],
            env: { SEITPP_CACHE_DIR: cache },
            stdout: "piped",
            stderr: "piped",
          }).output()
        ));
        paths = runs.map((r) => {
          assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
          return new TextDecoder().decode(r.stdout).trim();
        });
        assert.equal(paths[0], paths[1]);
        const files = [...Deno.readDirSync(cache)].map((e) => e.name);
        assert.deepEqual(files, [paths[0].split("/").pop()]);
      } finally {
        await Deno.remove(file);
      }
      // the next call finds it in the cache
      Deno.env.set("SEITPP_CACHE_DIR", cache);
      const again = await buildNativeKernels({ quiet: true });
      assert.ok(!("reason" in again) && !again.built && again.path === paths[0]);
    } finally {
      Deno.env.delete("SEITPP_CACHE_DIR");
      await Deno.remove(cache, { recursive: true });
    }
  },
});

Deno.test({
  name: "the C kernels use the BLAS thread count",
  ignore: skip,
  fn: async () => {
    const saved = Deno.env.get("SEITPP_BLAS_THREADS");
    try {
      const info = await initBackend({ backend: "wasm", blasThreads: 1 });
      const k = activeNativeKernels() as NativeKernels;
      assert.equal(k.threads, 1);
      assert.match(describeBackend(info), /fused ops on C kernels \(.*, 1 OpenMP threads\)/);
      // the OpenMP wait policy is set only while the library loads (children keep theirs)
      assert.equal(Deno.env.get("OMP_WAIT_POLICY"), ompWaitPolicyBefore);
    } finally {
      await initBackend({ backend: "wasm" });
      if (saved !== undefined) Deno.env.set("SEITPP_BLAS_THREADS", saved);
    }
  },
});
