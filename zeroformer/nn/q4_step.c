/* The parts of a decoding step around zeroformer's Q4 matrix products (q4_kernel.c, compiled with
 * it into one library by nn/q4.py): the output layer's top-k, and one whole decoding step of a
 * LLaMA-style decoder (zf_llama_step), and beam search's self-attention over a cache read by
 * ancestry (zf_attend_rows). AVX-512 where compiled for it, portable C elsewhere. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define ZF_VNNI 1
#endif

void zf_q4_matmul(const float *x, int64_t R, int64_t K, const uint8_t *q, const uint16_t *sc,
                  int64_t N, float *y, void *work, int threads);

/* idx (R, k): the indices of the k largest of each row of x (R, V), in no particular order (a
 * value equal to the k-th largest enters only before it: the first ones win). A min-heap of k,
 * and 16 values at a time against its smallest: most rows of logits leave it after a few hundred. */
static void sift_down(float *hv, int64_t *hi, int k, int i) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= k) return;
        if (c + 1 < k && (hv[c + 1] < hv[c] || (hv[c + 1] == hv[c] && hi[c + 1] > hi[c]))) c++;
        if (hv[c] < hv[i] || (hv[c] == hv[i] && hi[c] > hi[i])) {
            float tv = hv[i]; hv[i] = hv[c]; hv[c] = tv;
            int64_t ti = hi[i]; hi[i] = hi[c]; hi[c] = ti;
            i = c;
        } else {
            return;
        }
    }
}

void zf_topk(const float *x, int64_t R, int64_t V, int k, int64_t *idx) {
    float hv[256];
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * V;
        int64_t *hi = idx + r * k;
        for (int i = 0; i < k; i++) { hv[i] = xr[i]; hi[i] = i; }
        for (int i = k / 2 - 1; i >= 0; i--) sift_down(hv, hi, k, i);
        int64_t j = k;
#ifdef ZF_VNNI
        for (; j + 16 <= V; j += 16) {
            __mmask16 over = _mm512_cmp_ps_mask(_mm512_loadu_ps(xr + j), _mm512_set1_ps(hv[0]),
                                                _CMP_GT_OQ);
            while (over) {
                int t = __builtin_ctz(over);
                over &= over - 1;
                if (xr[j + t] > hv[0]) { hv[0] = xr[j + t]; hi[0] = j + t; sift_down(hv, hi, k, 0); }
            }
        }
#endif
        for (; j < V; j++)
            if (xr[j] > hv[0]) { hv[0] = xr[j]; hi[0] = j; sift_down(hv, hi, k, 0); }
    }
}

/* ------------------------------------------------------------------------------------------
 * One decoding step of a LLaMA-style decoder (pre-norm RMSNorm, RoPE "rotate half", grouped-query
 * attention over an fp32 KV cache, SwiGLU feed-forward, no biases), batch 1, every projection a
 * Q4 matrix above: the same computation as nn/blocks.py's TransformerBlock on that path, in one
 * call, so that a token costs the weights' memory traffic and no per-operation dispatch.
 * Used by nn/q4.py:LlamaStep; tests/test_q4.py checks it against the module path. */
typedef struct { const uint8_t *q; const uint16_t *sc; int64_t n, k; } ZfQ4;
typedef struct {
    const float *norm_attn, *norm_ffn;
    ZfQ4 qkv, o, gate_up, down;
    float *k_cache, *v_cache;                 /* (n_kv, max_len, hd): batch row 0 of the cache */
} ZfLayer;

/* y (R, N) = x (R, K) W^T (q4_kernel.c). */
static void q4_mv(const ZfQ4 *w, const float *x, int64_t R, float *y, void *work, int threads) {
    zf_q4_matmul(x, R, w->k, w->q, w->sc, w->n, y, work, threads);
}

static void rms_norm(const float *x, const float *g, float eps, int64_t n, float *y) {
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = g[i] * (x[i] * r);
}

static void rope(float *x, const float *c, const float *s, int64_t hd) {  /* rotate half */
    int64_t half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i + half] + a * s[i + half];
    }
}

#ifdef ZF_VNNI
/* e^x in float (Cephes' expf: x = n ln 2 + f, |f| <= ln 2 / 2, a degree-7 polynomial in f, then
 * times 2^n; relative error ~1e-7), 16 lanes at a time. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)),
                      _mm512_set1_ps(-87.3365447504f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    f = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), f);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(f, f), _mm512_add_ps(f, _mm512_set1_ps(1.f)));
    return _mm512_scalef_ps(y, n);
}
#endif

/* g (2 ff: gate then up) -> g[i] = silu(gate[i]) up[i] for i < ff, in place. */
static void swiglu(float *g, int64_t ff) {
    const float *u = g + ff;
    int64_t i = 0;
#ifdef ZF_VNNI
    for (; i + 16 <= ff; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i);
        __m512 den = _mm512_add_ps(_mm512_set1_ps(1.f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), x)));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_div_ps(x, den), _mm512_loadu_ps(u + i)));
    }
#endif
    for (; i < ff; i++) g[i] = g[i] / (1.f + expf(-g[i])) * u[i];
}

/* One head: o (hd,) = softmax(q K^T scale) V over cache positions 0..p. Position j's key and
 * value are kc + j * hd and vc + j * hd, or, with `rows` (beam search: zf_attend_rows),
 * kc + rows[j] * row_stride + j * hd (and vc likewise). keep (or NULL): position j counts only
 * where keep[j] != 0 (its weight is exactly 0). */
static inline const float *at(const float *base, const int32_t *rows, int64_t row_stride,
                              int64_t j, int64_t hd) {
    return base + (rows ? (int64_t)rows[j] * row_stride : 0) + j * hd;
}

static void attend(const float *q, const float *kc, const float *vc, int64_t p, int64_t hd,
                   float scale, float *sc, float *o, const int32_t *rows, int64_t row_stride,
                   const uint8_t *keep) {
    float mx = -INFINITY, z = 0.f;
#ifdef ZF_VNNI
    if (hd % 16 == 0 && hd <= 256) {
        int nv = (int)(hd / 16);
        __m512 qv[16], ov[16];
        for (int u = 0; u < nv; u++) { qv[u] = _mm512_loadu_ps(q + 16 * u); ov[u] = _mm512_setzero_ps(); }
        for (int64_t j = 0; j <= p; j++) {
            if (keep && !keep[j]) { sc[j] = -INFINITY; continue; }
            const float *kj = at(kc, rows, row_stride, j, hd);
            __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
            for (int u = 1; u < nv; u++)
                acc = _mm512_fmadd_ps(qv[u], _mm512_loadu_ps(kj + 16 * u), acc);
            sc[j] = _mm512_reduce_add_ps(acc) * scale;
            if (sc[j] > mx) mx = sc[j];
        }
        __m512 zv = _mm512_setzero_ps();
        for (int64_t j = 0; j <= p; j += 16) {
            __mmask16 mk = (__mmask16)(p + 1 - j >= 16 ? 0xffff : (1u << (p + 1 - j)) - 1);
            __m512 ev = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sc + j), _mm512_set1_ps(mx)));
            if (keep) {                       /* masked positions: exactly 0, not exp's floor */
                __mmask16 km = 0;
                for (int i = 0; i < 16 && j + i <= p; i++) km |= (__mmask16)((keep[j + i] != 0) << i);
                ev = _mm512_maskz_mov_ps(km, ev);
            }
            _mm512_mask_storeu_ps(sc + j, mk, ev);
            zv = _mm512_mask_add_ps(zv, mk, zv, ev);
        }
        z = _mm512_reduce_add_ps(zv);
        for (int64_t j = 0; j <= p; j++) {
            if (keep && !keep[j]) continue;
            const float *vj = at(vc, rows, row_stride, j, hd);
            __m512 pj = _mm512_set1_ps(sc[j] / z);
            for (int u = 0; u < nv; u++)
                ov[u] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * u), ov[u]);
        }
        for (int u = 0; u < nv; u++) _mm512_storeu_ps(o + 16 * u, ov[u]);
        return;
    }
#endif
    for (int64_t j = 0; j <= p; j++) {
        if (keep && !keep[j]) { sc[j] = -INFINITY; continue; }
        const float *kj = at(kc, rows, row_stride, j, hd);
        float acc = 0.f;
        for (int64_t u = 0; u < hd; u++) acc += q[u] * kj[u];
        sc[j] = acc * scale;
        if (sc[j] > mx) mx = sc[j];
    }
    for (int64_t j = 0; j <= p; j++) { sc[j] = expf(sc[j] - mx); z += sc[j]; }
    for (int64_t u = 0; u < hd; u++) o[u] = 0.f;
    for (int64_t j = 0; j <= p; j++) {
        if (keep && !keep[j]) continue;
        const float *vj = at(vc, rows, row_stride, j, hd);
        float pj = sc[j] / z;
        for (int64_t u = 0; u < hd; u++) o[u] += pj * vj[u];
    }
}

/* Beam-search self-attention, one new position per row, over a cache whose rows are never moved
 * (nn/attention.py: KVCache read by ancestry): row r's position j is in cache row
 * anc[r * anc_stride + j]. q, o: (R, n_head, hd); k, v: (N, n_kv, max_len, hd); positions
 * 0..t-1; keep: (R, t) or NULL. */
void zf_attend_rows(const float *q, const float *k, const float *v, const int32_t *anc,
                    int64_t anc_stride, const uint8_t *keep, int64_t R, int64_t n_head,
                    int64_t n_kv, int64_t max_len, int64_t t, int64_t hd, float *o, int threads) {
    int64_t rep = n_head / n_kv, row_stride = n_kv * max_len * hd;
    float scale = 1.f / sqrtf((float)hd);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        float *sc = malloc((size_t)t * sizeof(float));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t rh = 0; rh < R * n_head; rh++) {
            int64_t r = rh / n_head, g = (rh % n_head) / rep;
            if (sc)
                attend(q + rh * hd, k + g * max_len * hd, v + g * max_len * hd, t - 1, hd, scale,
                       sc, o + rh * hd, anc + r * anc_stride, row_stride, keep ? keep + r * t : NULL);
        }
        free(sc);
    }
}

#ifdef ZF_VNNI
/* rep <= 4 heads of 64 dims sharing one KV head (grouped-query attention): attend()'s operations
 * for each head, in the same order, with each key and value row loaded once for all of them. */
static void attend_shared(const float *q, const float *kc, const float *vc, int64_t p, int rep,
                          float scale, float *sc, int64_t sc_stride, float *o) {
    __m512 qv[4][4], ov[4][4];
    float mx[4], z[4];
    for (int h = 0; h < rep; h++) {
        mx[h] = -INFINITY;
        for (int u = 0; u < 4; u++) {
            qv[h][u] = _mm512_loadu_ps(q + 64 * h + 16 * u);
            ov[h][u] = _mm512_setzero_ps();
        }
    }
    for (int64_t j = 0; j <= p; j++) {
        __m512 k0 = _mm512_loadu_ps(kc + 64 * j), k1 = _mm512_loadu_ps(kc + 64 * j + 16);
        __m512 k2 = _mm512_loadu_ps(kc + 64 * j + 32), k3 = _mm512_loadu_ps(kc + 64 * j + 48);
        for (int h = 0; h < rep; h++) {
            __m512 acc = _mm512_mul_ps(qv[h][0], k0);
            acc = _mm512_fmadd_ps(qv[h][1], k1, acc);
            acc = _mm512_fmadd_ps(qv[h][2], k2, acc);
            acc = _mm512_fmadd_ps(qv[h][3], k3, acc);
            float v = _mm512_reduce_add_ps(acc) * scale;
            sc[h * sc_stride + j] = v;
            if (v > mx[h]) mx[h] = v;
        }
    }
    for (int h = 0; h < rep; h++) {
        float *sh = sc + h * sc_stride;
        __m512 zv = _mm512_setzero_ps();
        for (int64_t j = 0; j <= p; j += 16) {
            __mmask16 mk = (__mmask16)(p + 1 - j >= 16 ? 0xffff : (1u << (p + 1 - j)) - 1);
            __m512 ev = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sh + j), _mm512_set1_ps(mx[h])));
            _mm512_mask_storeu_ps(sh + j, mk, ev);
            zv = _mm512_mask_add_ps(zv, mk, zv, ev);
        }
        z[h] = _mm512_reduce_add_ps(zv);
    }
    for (int64_t j = 0; j <= p; j++) {
        __m512 v0 = _mm512_loadu_ps(vc + 64 * j), v1 = _mm512_loadu_ps(vc + 64 * j + 16);
        __m512 v2 = _mm512_loadu_ps(vc + 64 * j + 32), v3 = _mm512_loadu_ps(vc + 64 * j + 48);
        for (int h = 0; h < rep; h++) {
            __m512 pj = _mm512_set1_ps(sc[h * sc_stride + j] / z[h]);
            ov[h][0] = _mm512_fmadd_ps(pj, v0, ov[h][0]);
            ov[h][1] = _mm512_fmadd_ps(pj, v1, ov[h][1]);
            ov[h][2] = _mm512_fmadd_ps(pj, v2, ov[h][2]);
            ov[h][3] = _mm512_fmadd_ps(pj, v3, ov[h][3]);
        }
    }
    for (int h = 0; h < rep; h++)
        for (int u = 0; u < 4; u++) _mm512_storeu_ps(o + 64 * h + 16 * u, ov[h][u]);
}
#endif

/* R rows, row r one new token at position pos[r] of cache row r (k_cache + r * row_stride). */
void zf_llama_step(const ZfLayer *layers, int n_layer, float *h, int64_t R, int64_t dm,
                   int64_t n_head, int64_t n_kv, int64_t hd, const int64_t *pos, int64_t max_len,
                   int64_t row_stride, const float *cos_t, const float *sin_t, float eps,
                   const float *final_norm, float *scratch, int threads) {
    int64_t hq = n_head * hd, hk = n_kv * hd, ff = layers[0].down.k, rep = n_head / n_kv;
    int64_t width = hq + 2 * hk, tw = dm > ff ? dm : ff;
    float *t = scratch, *qkv = t + R * tw, *att = qkv + R * width;
    float *gu = att + R * hq, *out = gu + R * 2 * ff, *scores = out + R * dm;
    void *work = scores + n_head * max_len;                         /* scores: n_head * max_len */
    float scale = 1.f / sqrtf((float)hd);
    for (int l = 0; l < n_layer; l++) {
        const ZfLayer *L = layers + l;
        for (int64_t r = 0; r < R; r++) rms_norm(h + r * dm, L->norm_attn, eps, dm, t + r * dm);
        q4_mv(&L->qkv, t, R, qkv, work, threads);
        for (int64_t r = 0; r < R; r++) {
            float *q = qkv + r * width, *k = q + hq, *v = k + hk, *kc0 = L->k_cache + r * row_stride;
            float *vc0 = L->v_cache + r * row_stride;
            int64_t p = pos[r];
            const float *c = cos_t + p * hd, *sn = sin_t + p * hd;
            for (int64_t i = 0; i < n_head; i++) rope(q + i * hd, c, sn, hd);
            for (int64_t i = 0; i < n_kv; i++) {
                rope(k + i * hd, c, sn, hd);
                memcpy(kc0 + (i * max_len + p) * hd, k + i * hd, hd * sizeof(float));
                memcpy(vc0 + (i * max_len + p) * hd, v + i * hd, hd * sizeof(float));
            }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && p >= 64)
#endif
            for (int64_t i = 0; i < n_head; i++) {        /* softmax(q K^T / sqrt(d)) V per head */
#ifdef ZF_VNNI
                if (hd == 64 && rep <= 4) {               /* the rep heads of one KV head at once */
                    if (i % rep == 0)
                        attend_shared(q + i * hd, kc0 + (i / rep) * max_len * hd,
                                      vc0 + (i / rep) * max_len * hd, p, (int)rep, scale,
                                      scores + i * max_len, max_len, att + r * hq + i * hd);
                    continue;
                }
#endif
                attend(q + i * hd, kc0 + (i / rep) * max_len * hd, vc0 + (i / rep) * max_len * hd,
                       p, hd, scale, scores + i * max_len, att + r * hq + i * hd, NULL, 0, NULL);
            }
        }
        q4_mv(&L->o, att, R, out, work, threads);
        for (int64_t i = 0; i < R * dm; i++) h[i] += out[i];
        for (int64_t r = 0; r < R; r++) rms_norm(h + r * dm, L->norm_ffn, eps, dm, t + r * dm);
        q4_mv(&L->gate_up, t, R, gu, work, threads);
        for (int64_t r = 0; r < R; r++) swiglu(gu + r * 2 * ff, ff);
        /* down reads R rows of ff values at stride 2 ff: compact them first */
        for (int64_t r = 1; r < R; r++) memmove(gu + r * ff, gu + r * 2 * ff, ff * sizeof(float));
        q4_mv(&L->down, gu, R, out, work, threads);
        for (int64_t i = 0; i < R * dm; i++) h[i] += out[i];
    }
    if (final_norm)
        for (int64_t r = 0; r < R; r++) {
            rms_norm(h + r * dm, final_norm, eps, dm, t);
            memcpy(h + r * dm, t, dm * sizeof(float));
        }
}
