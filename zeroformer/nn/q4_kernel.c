/* zeroformer's 4-bit x 8-bit matrix-vector kernel (CPU, AVX-512 VNNI; a portable C loop elsewhere).
 *
 * Weights, per output row n and block b of 32 inputs (the GGUF Q4_1 layout):
 *     w[n, 32b + j] = d[n, b] * q[n, 32b + j] + m[n, b],      q in 0..15, d and m fp16
 * Activations, per row r of x and block b, quantized on the fly to int8 (llama.cpp's Q8 scheme):
 *     x[r, 32b + j] ~= e[r, b] * a[r, 32b + j],   e = max|x_block| / 127,  a in -127..127
 * so that
 *     y[r, n] = sum_b d[n,b] e[r,b] (sum_j q a)  +  m[n,b] e[r,b] (sum_j a)
 * The inner sum_j q a is 64 byte products per instruction (vpdpbusd: unsigned q times signed a).
 *
 * Packing of q (done in Python, nn/q4.py): each pair of blocks (b, b+1) is 32 bytes; byte i < 16
 * holds q[32b + i] (low nibble) and q[32b + 16 + i] (high nibble), byte 16 + i the same for b+1.
 * The quantized activations are stored permuted to match the unpacked nibbles (see quantize_x).
 * K must be a multiple of 64 for the vector path (SmolLM2, LLaMA: 576, 1536, 2048...); other K
 * take the portable loop.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define ZF_VNNI 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

static float h2f(uint16_t h) {  /* IEEE half -> float (portable path; the vector path uses F16C) */
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, f = h & 0x3ff, u;
    if (e == 0) {
        if (f == 0) { u = s; }
        else { e = 127 - 15 + 1; while (!(f & 0x400)) { f <<= 1; e--; } f &= 0x3ff; u = s | (e << 23) | (f << 13); }
    } else if (e == 31) { u = s | 0x7f800000 | (f << 13); }
    else { u = s | ((e + 127 - 15) << 23) | (f << 13); }
    float out; memcpy(&out, &u, 4); return out;
}

int zf_q4_has_vnni(void) {
#ifdef ZF_VNNI
    return 1;
#else
    return 0;
#endif
}

/* x (K,) float -> a (K,) int8 in the packed order of each block pair, e (K/32,) scales,
 * s (K/32,) = e * sum(a) of the block. Order within a pair (b, b+1), 64 bytes:
 *   [b: 0..15][b+1: 0..15][b: 16..31][b+1: 16..31]    (matches the unpacked nibbles) */
static void quantize_x(const float *x, int64_t K, int8_t *a, float *e, float *s) {
    int64_t nb = K / 32;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.f;
        for (int j = 0; j < 32; j++) { float v = fabsf(xb[j]); if (v > amax) amax = v; }
        float eb = amax / 127.f, inv = eb > 0.f ? 1.f / eb : 0.f;
        int sum = 0;
        int64_t pair = b / 2, second = b % 2;
        int8_t *dst = a + 64 * pair + 16 * second;
        if (K % 64 != 0) dst = a + 32 * b;          /* portable path: natural order */
        for (int j = 0; j < 32; j++) {
            int v = (int)lrintf(xb[j] * inv);
            v = v > 127 ? 127 : (v < -127 ? -127 : v);
            sum += v;
            if (K % 64 != 0) dst[j] = (int8_t)v;
            else dst[(j < 16 ? j : j + 16)] = (int8_t)v;
        }
        e[b] = eb; s[b] = eb * (float)sum;
    }
}

/* One output: row n of the weights against one quantized activation row. */
static float dot_row(const uint8_t *q, const uint16_t *d, const uint16_t *m, const int8_t *a,
                     const float *e, const float *s, int64_t K) {
    int64_t nb = K / 32;
    float acc = 0.f;
#ifdef ZF_VNNI
    if (K % 64 == 0) {
        const __m512i low = _mm512_set1_epi8(0x0f);
        /* lanes 0-3 and 8-11 belong to block b, 4-7 and 12-15 to block b+1: the lane's index
         * into a vector of 16 per-block scales is 2p + pick */
        const __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
        const __m512i two = _mm512_set1_epi32(2);
        __m512 vacc = _mm512_setzero_ps(), vmin = _mm512_setzero_ps();
        for (int64_t c = 0; c < nb; c += 16) {      /* 16 blocks (8 pairs) share one scale load */
            int cnt = nb - c < 16 ? (int)(nb - c) : 16;
            __mmask16 mk = (__mmask16)((1u << cnt) - 1);
            __m512 de = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, d + c)),
                                      _mm512_maskz_loadu_ps(mk, e + c));
            vmin = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, m + c)),
                                   _mm512_maskz_loadu_ps(mk, s + c), vmin);
            const uint8_t *qc = q + 16 * c;
            const int8_t *ac = a + 32 * c;
            __m512i idx = pick;
            for (int p = 0; p < cnt / 2; p++) {
                __m256i packed = _mm256_loadu_si256((const __m256i *)(qc + 32 * p));
                __m512i wide = _mm512_inserti64x4(_mm512_castsi256_si512(packed),
                                                  _mm256_srli_epi16(packed, 4), 1);
                __m512i w = _mm512_and_si512(wide, low);
                __m512i x = _mm512_loadu_si512((const void *)(ac + 64 * p));
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
                vacc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(idx, de), vacc);
                idx = _mm512_add_epi32(idx, two);
            }
        }
        return _mm512_reduce_add_ps(_mm512_add_ps(vacc, vmin));
    }
#endif
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qb = q + 16 * b;  /* portable order: pairs only matter for the vector path */
        int64_t pair = b / 2, second = b % 2;
        if (K % 64 == 0) qb = q + 32 * pair + 16 * second;
        const int8_t *ab = a + 32 * b;
        int dot = 0;
        if (K % 64 == 0) {
            const int8_t *lo = a + 64 * pair + 16 * second, *hi = lo + 32;
            for (int i = 0; i < 16; i++) dot += (qb[i] & 15) * lo[i] + (qb[i] >> 4) * hi[i];
        } else {
            for (int i = 0; i < 16; i++) dot += (qb[i] & 15) * ab[i] + (qb[i] >> 4) * ab[i + 16];
        }
        acc += h2f(d[b]) * e[b] * (float)dot + h2f(m[b]) * s[b];
    }
    return acc;
}

#ifdef ZF_VNNI
/* Row n of the weights against up to 4 activation rows at once (K % 64 == 0): each pair of
 * blocks is unpacked once and used for every row. y[r * ystride] for r < R. */
static inline __attribute__((always_inline)) void dot_rows4(
        const uint8_t *q, const uint16_t *d, const uint16_t *m, const int8_t *a, const float *e,
        const float *s, int64_t K, const int R, float *y, int64_t ystride) {
    int64_t nb = K / 32;
    const __m512i low = _mm512_set1_epi8(0x0f), two = _mm512_set1_epi32(2);
    const __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc[4], mins[4], de[4];      /* the same order of sums as dot_row: equal results */
    for (int r = 0; r < 4; r++) acc[r] = mins[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nb; c += 16) {
        int cnt = nb - c < 16 ? (int)(nb - c) : 16;
        __mmask16 mk = (__mmask16)((1u << cnt) - 1);
        __m512 dv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, d + c));
        __m512 mv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, m + c));
        for (int r = 0; r < R; r++) {
            de[r] = _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(mk, e + r * nb + c));
            mins[r] = _mm512_fmadd_ps(mv, _mm512_maskz_loadu_ps(mk, s + r * nb + c), mins[r]);
        }
        const uint8_t *qc = q + 16 * c;
        __m512i idx = pick;
        for (int p = 0; p < cnt / 2; p++) {
            __m256i packed = _mm256_loadu_si256((const __m256i *)(qc + 32 * p));
            __m512i w = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(packed),
                                                            _mm256_srli_epi16(packed, 4), 1), low);
            for (int r = 0; r < R; r++) {
                __m512i x = _mm512_loadu_si512((const void *)(a + r * K + 32 * c + 64 * p));
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot),
                                         _mm512_permutexvar_ps(idx, de[r]), acc[r]);
            }
            idx = _mm512_add_epi32(idx, two);
        }
    }
    for (int r = 0; r < R; r++) y[r * ystride] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r], mins[r]));
}
#endif

#ifdef ZF_VNNI
/* Two weight rows (n, n+1: q, d, m at row strides qs, bs) against one activation row, sharing
 * its loads; each row's sums in dot_row's order (equal results). */
static void dot_2rows(const uint8_t *q, const uint16_t *d, const uint16_t *m, int64_t qs,
                      int64_t bs, const int8_t *a, const float *e, const float *s, int64_t K,
                      float *y) {
    int64_t nb = K / 32;
    const __m512i low = _mm512_set1_epi8(0x0f), two = _mm512_set1_epi32(2);
    const __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, min0 = acc0, min1 = acc0;
    for (int64_t c = 0; c < nb; c += 16) {
        int cnt = nb - c < 16 ? (int)(nb - c) : 16;
        __mmask16 mk = (__mmask16)((1u << cnt) - 1);
        __m512 ev = _mm512_maskz_loadu_ps(mk, e + c), sv = _mm512_maskz_loadu_ps(mk, s + c);
        __m512 de0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, d + c)), ev);
        __m512 de1 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, d + bs + c)), ev);
        min0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, m + c)), sv, min0);
        min1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, m + bs + c)), sv, min1);
        const uint8_t *q0 = q + 16 * c, *q1 = q0 + qs;
        const int8_t *ac = a + 32 * c;
        __m512i idx = pick;
        for (int p = 0; p < cnt / 2; p++) {
            __m512i x = _mm512_loadu_si512((const void *)(ac + 64 * p));
            __m256i p0 = _mm256_loadu_si256((const __m256i *)(q0 + 32 * p));
            __m256i p1 = _mm256_loadu_si256((const __m256i *)(q1 + 32 * p));
            __m512i w0 = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(p0),
                                                             _mm256_srli_epi16(p0, 4), 1), low);
            __m512i w1 = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(p1),
                                                             _mm256_srli_epi16(p1, 4), 1), low);
            __m512i t0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, x);
            __m512i t1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w1, x);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t0), _mm512_permutexvar_ps(idx, de0), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t1), _mm512_permutexvar_ps(idx, de1), acc1);
            idx = _mm512_add_epi32(idx, two);
        }
    }
    y[0] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, min0));
    y[1] = _mm512_reduce_add_ps(_mm512_add_ps(acc1, min1));
}
#endif

/* y[r * N + n] for r < R: row n of the weights against every activation row. */
static void dot_all_rows(const uint8_t *q, const uint16_t *d, const uint16_t *m, const int8_t *a,
                         const float *e, const float *s, int64_t K, int64_t R, float *y,
                         int64_t N) {
    int64_t nb = K / 32, r = 0;
#ifdef ZF_VNNI
    if (K % 64 == 0 && R > 1) {
        for (; r + 4 <= R; r += 4)   /* R a constant in each call: accumulators in registers */
            dot_rows4(q, d, m, a + r * K, e + r * nb, s + r * nb, K, 4, y + r * N, N);
        switch (R - r) {
        case 3: dot_rows4(q, d, m, a + r * K, e + r * nb, s + r * nb, K, 3, y + r * N, N); break;
        case 2: dot_rows4(q, d, m, a + r * K, e + r * nb, s + r * nb, K, 2, y + r * N, N); break;
        case 1: dot_rows4(q, d, m, a + r * K, e + r * nb, s + r * nb, K, 1, y + r * N, N); break;
        default: break;
        }
        return;
    }
#endif
    for (; r < R; r++) y[r * N] = dot_row(q, d, m, a + r * K, e + r * nb, s + r * nb, K);
}

/* The loop over weight rows (split between threads): one activation row takes two weight rows
 * at a time (dot_2rows), several take one weight row against all of them (dot_all_rows). */
#ifdef ZF_VNNI
#define PAIRS_OF_ROWS(Q, D, M)                                                                  \
    if (R == 1 && K % 64 == 0) {                                                              \
        _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)") \
        for (int64_t n = 0; n < N - 1; n += 2)                                                \
            dot_2rows(Q + n * (K / 2), D + n * nb, M + n * nb, K / 2, nb, a, e, s, K, y + n); \
        if (N % 2)                                                                            \
            y[N - 1] = dot_row(Q + (N - 1) * (K / 2), D + (N - 1) * nb, M + (N - 1) * nb, a,  \
                               e, s, K);                                                      \
        return;                                                                               \
    }
#else
#define PAIRS_OF_ROWS(Q, D, M)
#endif
#define MATVEC(Q, D, M)                                                                        \
    PAIRS_OF_ROWS(Q, D, M)                                                                    \
    _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)") \
    for (int64_t n = 0; n < N; n++)                                                           \
        dot_all_rows(Q + n * (K / 2), D + n * nb, M + n * nb, a, e, s, K, R, y + n, N);

/* y (R, N) = x (R, K) W^T for the packed W (N rows of K/2 bytes; d, m (N, K/32) fp16).
 * work: R * (K + 8 * K/32) bytes of scratch for the quantized activations. */
void zf_q4_matmul(const float *x, int64_t R, int64_t K, const uint8_t *q, const uint16_t *d,
                  const uint16_t *m, int64_t N, float *y, void *work, int threads) {
    int64_t nb = K / 32;
    int8_t *a = (int8_t *)work;
    float *e = (float *)(a + R * K), *s = e + R * nb;
    for (int64_t r = 0; r < R; r++) quantize_x(x + r * K, K, a + r * K, e + r * nb, s + r * nb);
    MATVEC(q, d, m)
}

/* The weights as bf16 (N, K), w = d q + m rounded to nearest even: for many rows at once
 * (a prompt), where one bf16 matrix product beats R matrix-vector products (nn/q4.py). */
void zf_q4_dequant_bf16(const uint8_t *q, const uint16_t *d, const uint16_t *m, int64_t N,
                        int64_t K, uint16_t *out, int threads) {
    int64_t nb = K / 32;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)
#endif
    for (int64_t n = 0; n < N; n++) {
        for (int64_t b = 0; b < nb; b++) {
            float db = h2f(d[n * nb + b]), mb = h2f(m[n * nb + b]);
            const uint8_t *qb = q + n * (K / 2) + 16 * b;     /* K % 64 != 0: blocks apart */
            const uint8_t *lo = qb;
            int shift_lo = 0, shift_hi = 4;
            if (K % 64 == 0) lo = q + n * (K / 2) + 32 * (b / 2) + 16 * (b % 2);
            uint16_t *o = out + n * K + 32 * b;
            for (int j = 0; j < 32; j++) {
                int code = j < 16 ? (lo[j] >> shift_lo) & 15 : (lo[j - 16] >> shift_hi) & 15;
                float w = db * (float)code + mb;
                uint32_t u;
                memcpy(&u, &w, 4);
                u += 0x7fff + ((u >> 16) & 1);
                o[j] = (uint16_t)(u >> 16);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * One decoding step of a LLaMA-style decoder (pre-norm RMSNorm, RoPE "rotate half", grouped-query
 * attention over an fp32 KV cache, SwiGLU feed-forward, no biases), batch 1, every projection a
 * Q4 matrix above: the same computation as nn/blocks.py's TransformerBlock on that path, in one
 * call, so that a token costs the weights' memory traffic and no per-operation dispatch.
 * Used by nn/q4.py:LlamaStep; tests/test_q4.py checks it against the module path. */
typedef struct { const uint8_t *q; const uint16_t *d, *m; int64_t n, k; } ZfQ4;
typedef struct {
    const float *norm_attn, *norm_ffn;
    ZfQ4 qkv, o, gate_up, down;
    float *k_cache, *v_cache;                 /* (n_kv, max_len, hd): batch row 0 of the cache */
} ZfLayer;

/* y (R, N) = x (R, K) W^T: quantize the R rows, then every weight row against all of them. */
static void q4_mv(const ZfQ4 *w, const float *x, int64_t R, float *y, void *work, int threads) {
    int64_t K = w->k, nb = K / 32, N = w->n;
    int8_t *a = (int8_t *)work;
    float *e = (float *)(a + R * K), *s = e + R * nb;
    for (int64_t r = 0; r < R; r++) quantize_x(x + r * K, K, a + r * K, e + r * nb, s + r * nb);
    MATVEC(w->q, w->d, w->m)
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
                const float *qi = q + i * hd, *kc = kc0 + (i / rep) * max_len * hd;
                const float *vc = vc0 + (i / rep) * max_len * hd;
                float *sc = scores + i * max_len, mx = -INFINITY, z = 0.f, *o = att + r * hq + i * hd;
                for (int64_t j = 0; j <= p; j++) {
                    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
                    for (int64_t u = 0; u < hd; u++) acc += qi[u] * kc[j * hd + u];
                    sc[j] = acc * scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int64_t j = 0; j <= p; j++) { sc[j] = expf(sc[j] - mx); z += sc[j]; }
                for (int64_t u = 0; u < hd; u++) o[u] = 0.f;
                for (int64_t j = 0; j <= p; j++) {
                    float pj = sc[j] / z;
#pragma omp simd
                    for (int64_t u = 0; u < hd; u++) o[u] += pj * vc[j * hd + u];
                }
            }
        }
        q4_mv(&L->o, att, R, out, work, threads);
        for (int64_t i = 0; i < R * dm; i++) h[i] += out[i];
        for (int64_t r = 0; r < R; r++) rms_norm(h + r * dm, L->norm_ffn, eps, dm, t + r * dm);
        q4_mv(&L->gate_up, t, R, gu, work, threads);
        for (int64_t r = 0; r < R; r++) {
            float *g = gu + r * 2 * ff, *u = g + ff, *o = gu + r * 2 * ff;  /* in place: o[i] <= g[i] */
            for (int64_t i = 0; i < ff; i++) o[i] = g[i] / (1.f + expf(-g[i])) * u[i];
        }
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
