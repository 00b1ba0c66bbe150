/*
 * seitpp native kernels: the fused element-wise and row-wise passes of the wasm backend
 * (lib/backend/native_ops.ts), in C with OpenMP threads, working in place on the wasm heap
 * through Deno FFI. Built and loaded by lib/backend/native_build.ts / native_kernels.ts.
 *
 * Every function takes plain float/int pointers and sizes and none allocates tensors; the
 * callers check shapes and targets. Only the LayerNorm gradient allocates (its per-thread
 * parameter-gradient sums) and returns -1 when that fails. Sums that decide a normalisation (LayerNorm
 * mean/variance, cross-entropy log-sum-exp, LayerNorm parameter gradients) are accumulated
 * in double, as the JS kernels do.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

static int n_threads = 1;

/* Below this many elements a pass runs on the calling thread only. */
#define PAR_MIN 32768

/* Set the thread count of every later call (>= 1). Returns the count in use. */
int seitpp_set_threads(int n) {
  n_threads = n < 1 ? 1 : n;
  return n_threads;
}

/* The library's version of the interface (bump when a signature changes). */
int seitpp_abi(void) { return 3; }

/*
 * exp(x) for float, branch-free so that loops over it vectorise: x = k ln2 + r with
 * |r| <= ln2/2, e^r by its Taylor series to r^7 (relative error < 3e-9 before rounding),
 * times 2^k built in the exponent bits. Inputs below -87.3 give 0, above 88.7 give 2^128's
 * neighbourhood clamped to FLT_MAX-ish (not reached by the kernels: they exponentiate
 * values <= 0).
 */
static inline float exp_f(float x) {
  const float hi = 88.37f, lo = -87.33f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  const float log2e = 1.44269504088896341f;
  const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float k = (xc * log2e + shifter) - shifter;
  const float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-6f;
  float r = xc - k * ln2_hi;
  r = r - k * ln2_lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  union { int32_t i; float f; } s;
  s.i = ((int32_t)k + 127) << 23;
  float y = p * s.f;
  return x < lo ? 0.0f : y;
}

/* ---- GELU ------------------------------------------------------------------------------ */
/*
 * y = x Phi(x), d = Phi(x) + x phi(x), Phi through erf by Abramowitz & Stegun 7.1.26
 * (|error| <= 1.5e-7), the same approximation as the JS kernel and lib/models/ops.ts.
 */
void seitpp_gelu(const float *x, float *y, float *d, int n) {
  const float p = 0.3275911f;
  const float a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f, a4 = -1.453152027f,
              a5 = 1.061405429f;
  const float inv_sqrt_2pi = 0.398942280401432678f;
  const float sqrt1_2 = 0.707106781186547524f;
#pragma omp parallel for simd schedule(static) num_threads(n_threads) if (n >= PAR_MIN)
  for (int i = 0; i < n; i++) {
    float v = x[i];
    float z = fabsf(v) * sqrt1_2;
    float t = 1.0f / (1.0f + p * z);
    float poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))));
    float gauss = exp_f(-0.5f * v * v);
    float tail = 0.5f * poly * gauss; /* Phi(-|x|) */
    float cdf = v > 0.0f ? 1.0f - tail : tail;
    y[i] = v * cdf;
    d[i] = cdf + v * gauss * inv_sqrt_2pi;
  }
}

/* ---- LayerNorm ------------------------------------------------------------------------- */
/* Over the last axis of x [rows, c]: y = xhat * g + b, xhat = (x - mean) * rstd. */
void seitpp_layer_norm(const float *x, const float *g, const float *b, float *y, float *xhat,
                       float *rstd, int rows, int c, double eps) {
#pragma omp parallel for schedule(static) num_threads(n_threads) \
    if ((int64_t)rows * c >= PAR_MIN)
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * c;
    double mean = 0;
#pragma omp simd reduction(+ : mean)
    for (int j = 0; j < c; j++) mean += xr[j];
    mean /= c;
    double var = 0;
#pragma omp simd reduction(+ : var)
    for (int j = 0; j < c; j++) {
      double dv = xr[j] - mean;
      var += dv * dv;
    }
    double rs = 1.0 / sqrt(var / c + eps);
    rstd[r] = (float)rs;
    float m = (float)mean, rsf = (float)rs;
    float *yr = y + (size_t)r * c, *hr = xhat + (size_t)r * c;
#pragma omp simd
    for (int j = 0; j < c; j++) {
      float h = (xr[j] - m) * rsf;
      hr[j] = h;
      yr[j] = h * g[j] + b[j];
    }
  }
}

/*
 * Its gradient: dx [rows, c], dg [c], db [c] from dy, xhat, rstd [rows], g [c]. Returns 0,
 * or -1 when the sums' memory cannot be allocated (nothing is written then).
 */
int seitpp_layer_norm_grad(const float *dy, const float *xhat, const float *rstd,
                           const float *g, float *dx, float *dg, float *db, int rows, int c) {
  int nt = (int64_t)rows * c >= PAR_MIN ? n_threads : 1;
  size_t cc = c > 0 ? (size_t)c : 1;
  /* the total and one pair of sums per thread */
  double *sums = calloc(2 * cc * (size_t)(nt + 1), sizeof(double));
  if (sums == NULL) return -1;
  double *sg = sums, *sb = sums + cc;
#pragma omp parallel num_threads(nt)
  {
    double *lg = sums + 2 * cc * (size_t)(omp_get_thread_num() + 1);
    double *lb = lg + cc;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
      const float *d = dy + (size_t)r * c, *h = xhat + (size_t)r * c;
      double m1 = 0, m2 = 0;
#pragma omp simd reduction(+ : m1, m2)
      for (int j = 0; j < c; j++) {
        float dxh = d[j] * g[j];
        m1 += dxh;
        m2 += dxh * h[j];
        lg[j] += d[j] * h[j];
        lb[j] += d[j];
      }
      float m1f = (float)(m1 / c), m2f = (float)(m2 / c), rr = rstd[r];
      float *o = dx + (size_t)r * c;
#pragma omp simd
      for (int j = 0; j < c; j++) o[j] = rr * (d[j] * g[j] - m1f - h[j] * m2f);
    }
#pragma omp critical
    for (int j = 0; j < c; j++) {
      sg[j] += lg[j];
      sb[j] += lb[j];
    }
  }
  for (int j = 0; j < c; j++) {
    dg[j] = (float)sg[j];
    db[j] = (float)sb[j];
  }
  free(sums);
  return 0;
}

/* ---- softmax cross-entropy ------------------------------------------------------------- */
/*
 * Per row of logits x [rows, k] with int32 targets (checked by the caller to lie in [0, k)):
 * probs = softmax(x), loss = (1-s) nll + s (lse - mean(x - max)) with label smoothing s.
 */
void seitpp_softmax_xent(const float *x, const int32_t *targets, float *loss, float *probs,
                         int rows, int k, double smoothing) {
#pragma omp parallel for schedule(static) num_threads(n_threads) \
    if ((int64_t)rows * k >= PAR_MIN)
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * k;
    float *pr = probs + (size_t)r * k;
    float max = -INFINITY;
#pragma omp simd reduction(max : max)
    for (int j = 0; j < k; j++) max = xr[j] > max ? xr[j] : max;
#pragma omp simd
    for (int j = 0; j < k; j++) pr[j] = exp_f(xr[j] - max);
    double sum = 0, zsum = 0;
#pragma omp simd reduction(+ : sum, zsum)
    for (int j = 0; j < k; j++) {
      sum += pr[j];
      zsum += xr[j] - max;
    }
    double lse = log(sum);
    float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int j = 0; j < k; j++) pr[j] *= inv;
    double nll = lse - ((double)xr[targets[r]] - max);
    loss[r] = (float)(smoothing > 0 ? (1 - smoothing) * nll + smoothing * (lse - zsum / k) : nll);
  }
}

/* Its gradient: g = (probs - s/k - (1-s) onehot) * dy[row]. */
void seitpp_softmax_xent_grad(const float *probs, const int32_t *targets, const float *dy,
                              float *grad, int rows, int k, double smoothing) {
  float off = (float)(smoothing / k), hit = (float)(1 - smoothing);
#pragma omp parallel for schedule(static) num_threads(n_threads) \
    if ((int64_t)rows * k >= PAR_MIN)
  for (int r = 0; r < rows; r++) {
    const float *pr = probs + (size_t)r * k;
    float *gr = grad + (size_t)r * k;
    float d = dy[r];
#pragma omp simd
    for (int j = 0; j < k; j++) gr[j] = (pr[j] - off) * d;
    gr[targets[r]] -= hit * d;
  }
}

/* ---- attention softmax ----------------------------------------------------------------- */
/*
 * Row softmax in place over s [rows, n] (many (batch, head) blocks at once); with a dropout
 * mask m (or NULL) also used = softmax * m, the matrix that multiplies v.
 */
void seitpp_softmax_rows(float *s, const float *m, float *used, int rows, int n) {
#pragma omp parallel for schedule(static) num_threads(n_threads) \
    if ((int64_t)rows * n >= PAR_MIN)
  for (int r = 0; r < rows; r++) {
    float *sr = s + (size_t)r * n;
    float max = -INFINITY;
#pragma omp simd reduction(max : max)
    for (int j = 0; j < n; j++) max = sr[j] > max ? sr[j] : max;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
      float e = exp_f(sr[j] - max);
      sr[j] = e;
      sum += e;
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++) sr[j] *= inv;
    if (m != NULL) {
      const float *mr = m + (size_t)r * n;
      float *ur = used + (size_t)r * n;
#pragma omp simd
      for (int j = 0; j < n; j++) ur[j] = sr[j] * mr[j];
    }
  }
}

/* out = a * b element-wise over n values (the attention's dropout mask). */
void seitpp_mul(const float *a, const float *b, float *out, int n) {
#pragma omp parallel for simd schedule(static) num_threads(n_threads) if (n >= PAR_MIN)
  for (int i = 0; i < n; i++) out[i] = a[i] * b[i];
}

/*
 * The softmax backward in place over ds [rows, n] holding dP (the gradient of the
 * probabilities after dropout): with the mask m (or NULL) and the probabilities p,
 * ds = p * (dP m - rowsum(dP m p)).
 */
void seitpp_softmax_rows_grad(float *ds, const float *p, const float *m, int rows, int n) {
#pragma omp parallel for schedule(static) num_threads(n_threads) \
    if ((int64_t)rows * n >= PAR_MIN)
  for (int r = 0; r < rows; r++) {
    float *dr = ds + (size_t)r * n;
    const float *pr = p + (size_t)r * n;
    if (m != NULL) {
      const float *mr = m + (size_t)r * n;
#pragma omp simd
      for (int j = 0; j < n; j++) dr[j] *= mr[j];
    }
    float dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < n; j++) dot += dr[j] * pr[j];
#pragma omp simd
    for (int j = 0; j < n; j++) dr[j] = pr[j] * (dr[j] - dot);
  }
}
