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
 * The int32 sums of a block are exact, so a chunk of up to 16 blocks is summed in int32 and
 * scaled by d e once per chunk (the layout below, before quantize_x).
 *
 * Packing of q (done in Python, nn/q4.py:pack_q4) and of the quantized activations (quantize_x):
 * K % 64 == 0, the chunked layout described at chunk_len (SmolLM2, LLaMA: 576, 1536, 2048...);
 * other K take the portable loop, each block's 16 bytes holding q[32b + i] | q[32b + 16 + i] << 4.
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

/* The vector layout (K % 64 == 0). The K/32 blocks of a row go in chunks: of 16 blocks while 16
 * are left, then of 8, 4, 2 (K/32 is even). A chunk of c blocks starting at block c0 is c/2
 * vectors of 64 codes (32 packed bytes each: byte i holds code i in its low nibble and code
 * 32 + i in its high one); code P of vector v sits in 32-bit lane L = P / 4, byte t = P % 4, and is
 *     q[block c0 + L mod c, weight 4 (v 16/c + L / c) + t]
 * so each lane of vpdpbusd sums products of ONE block: a chunk's int32 sums over its c/2
 * vectors are the blocks' exact dot products (lanes L and L + c of one block when c < 16), and
 * the float scaling d e runs once per chunk and row instead of once per vector. The int8
 * activations are stored in the same order (quantize_x), nn/q4.py:pack_q4 packs the weights. */
static inline int chunk_len(int64_t left) {
    return left >= 16 ? 16 : left >= 8 ? 8 : left >= 4 ? 4 : 2;
}

/* Where weights 4g..4g+3 of block bl of a chunk of c blocks go (one 32-bit lane), as an offset
 * from the chunk's first code (32 c0): vector g / (16/c), lane bl + c (g mod 16/c). */
static inline int64_t lane_pos(int c, int bl, int g) {
    int sh = c == 16 ? 0 : c == 8 ? 1 : c == 4 ? 2 : 3;          /* 16/c = 1 << sh */
    return 64 * (g >> sh) + 4 * (bl + c * (g & ((1 << sh) - 1)));
}

/* Code j of block bl in such a chunk: the offset of its code (its activation's offset too), and
 * of its packed byte and nibble. */
static inline int64_t code_pos(int c, int bl, int j) { return lane_pos(c, bl, j >> 2) + (j & 3); }
static inline int code_of(const uint8_t *qc, int64_t off) {
    uint8_t byte = qc[(off / 64) * 32 + off % 32];
    return off % 64 >= 32 ? byte >> 4 : byte & 15;
}

/* x (K,) float -> a (K,) int8 (in the layout above when K % 64 == 0, else in natural order),
 * e (K/32,) scales, s (K/32,) = e * sum(a) of the block: e = max|x_block| / 127, a = round(x / e). */
static void quantize_x(const float *x, int64_t K, int8_t *a, float *e, float *s) {
    int64_t nb = K / 32;
    int vec = K % 64 == 0;
    for (int64_t c0 = 0; c0 < nb;) {
        int c = vec ? chunk_len(nb - c0) : 1;
        for (int bl = 0; bl < c; bl++) {
            int64_t b = c0 + bl;
            const float *xb = x + 32 * b;
            int8_t v8[32];
            int sum = 0;
            float eb, inv;
#ifdef ZF_VNNI
            __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
            eb = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1))) / 127.f;
            inv = eb > 0.f ? 1.f / eb : 0.f;
            __m512 vi = _mm512_set1_ps(inv);
            /* round to nearest even (the default mode, as lrintf), then clamp: the same values */
            __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vi));
            __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vi));
            i0 = _mm512_max_epi32(_mm512_min_epi32(i0, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
            i1 = _mm512_max_epi32(_mm512_min_epi32(i1, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
            sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            _mm_storeu_si128((__m128i *)v8, _mm512_cvtepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(v8 + 16), _mm512_cvtepi32_epi8(i1));
#else
            float amax = 0.f;
            for (int j = 0; j < 32; j++) { float v = fabsf(xb[j]); if (v > amax) amax = v; }
            eb = amax / 127.f;
            inv = eb > 0.f ? 1.f / eb : 0.f;
            for (int j = 0; j < 32; j++) {
                int v = (int)lrintf(xb[j] * inv);
                v = v > 127 ? 127 : (v < -127 ? -127 : v);
                sum += v;
                v8[j] = (int8_t)v;
            }
#endif
            if (vec) {                  /* 4 codes (a 32-bit lane) at a time */
                int8_t *dst = a + 32 * c0;
                for (int g = 0; g < 8; g++) memcpy(dst + lane_pos(c, bl, g), v8 + 4 * g, 4);
            } else {
                memcpy(a + 32 * b, v8, 32);
            }
            e[b] = eb; s[b] = eb * (float)sum;
        }
        c0 += c;
    }
}

/* The portable loop, one output: row n of the weights (q: K/2 bytes, d, m: K/32) against one
 * quantized activation row, block by block. K % 64 != 0: block b's 16 bytes hold
 * q[32b + i] | q[32b + 16 + i] << 4 and the activations are in natural order. */
static float dot_row(const uint8_t *q, const uint16_t *d, const uint16_t *m, const int8_t *a,
                     const float *e, const float *s, int64_t K) {
    int64_t nb = K / 32;
    float acc = 0.f;
    for (int64_t c0 = 0; c0 < nb;) {
        int c = K % 64 == 0 ? chunk_len(nb - c0) : 1;
        for (int bl = 0; bl < c; bl++) {
            int64_t b = c0 + bl;
            int dot = 0;
            for (int j = 0; j < 32; j++) {
                if (K % 64 == 0) {
                    int64_t off = code_pos(c, bl, j);
                    dot += code_of(q + 16 * c0, off) * a[32 * c0 + off];
                } else {
                    uint8_t byte = q[16 * b + j % 16];
                    dot += (j < 16 ? byte & 15 : byte >> 4) * a[32 * b + j];
                }
            }
            acc += h2f(d[b]) * e[b] * (float)dot + h2f(m[b]) * s[b];
        }
        c0 += c;
    }
    return acc;
}

#ifdef ZF_VNNI
/* NW weight rows (q, d, m at row strides qs, bs) against R activation rows (a, e, s at strides
 * K, K/32), K % 64 == 0: every chunk's codes are unpacked once and used for every activation
 * row. y[w + r * ys]. Per (weight row, activation row) the same operations in the same order
 * whatever NW and R (a row in a batch is computed exactly as alone):
 *     per chunk:  t = sum over its vectors of vpdpbusd (int32, exact)
 *                 acc = fma(float(t), d e (lanes: L mod c), acc);  acc = fma(m, s, acc)
 *     y = sum of acc's 16 lanes                                                     */
static inline __attribute__((always_inline)) void tile(
        const uint8_t *q, const uint16_t *d, const uint16_t *m, int64_t qs, int64_t bs,
        const int NW, const int8_t *a, const float *e, const float *s, int64_t K, const int R,
        float *y, int64_t ys) {
    int64_t nb = K / 32;
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512 acc[2][8];
    for (int w = 0; w < NW; w++)
        for (int r = 0; r < R; r++) acc[w][r] = _mm512_setzero_ps();
    for (int64_t c0 = 0; c0 < nb;) {
        int c = chunk_len(nb - c0);
        __mmask16 mk = (__mmask16)((1u << c) - 1);
        __m512i t[2][8];
        for (int w = 0; w < NW; w++)
            for (int r = 0; r < R; r++) t[w][r] = _mm512_setzero_si512();
        const uint8_t *qc = q + 16 * c0;
        const int8_t *ac = a + 32 * c0;
#define ZF_VECTOR(v)                                                                           \
        do {                                                                                  \
            __m512i wv[2];                                                                    \
            for (int w = 0; w < NW; w++) {                                                    \
                __m256i packed = _mm256_loadu_si256((const __m256i *)(qc + w * qs + 32 * (v))); \
                wv[w] = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(packed),   \
                                                            _mm256_srli_epi16(packed, 4), 1), low); \
            }                                                                                 \
            for (int r = 0; r < R; r++) {                                                     \
                __m512i x = _mm512_loadu_si512((const void *)(ac + r * K + 64 * (v)));        \
                for (int w = 0; w < NW; w++) t[w][r] = _mm512_dpbusd_epi32(t[w][r], wv[w], x); \
            }                                                                                 \
        } while (0)
        if (c == 16) {          /* a constant trip count: unrolled, the sums stay in place */
            for (int v = 0; v < 8; v++) ZF_VECTOR(v);
        } else {
            for (int v = 0; v < c / 2; v++) ZF_VECTOR(v);
        }
#undef ZF_VECTOR
        __m512i pick = _mm512_and_si512(lane, _mm512_set1_epi32(c - 1));
        for (int w = 0; w < NW; w++) {
            __m512 dv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, d + w * bs + c0));
            __m512 mv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, m + w * bs + c0));
            for (int r = 0; r < R; r++) {
                __m512 de = _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(mk, e + r * nb + c0));
                if (c < 16) de = _mm512_permutexvar_ps(pick, de);
                acc[w][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t[w][r]), de, acc[w][r]);
                acc[w][r] = _mm512_fmadd_ps(mv, _mm512_maskz_loadu_ps(mk, s + r * nb + c0),
                                            acc[w][r]);
            }
        }
        c0 += c;
    }
    for (int w = 0; w < NW; w++)
        for (int r = 0; r < R; r++) y[w + r * ys] = _mm512_reduce_add_ps(acc[w][r]);
}

/* Row n of the weights against all R activation rows: tiles of 8 rows, then the rest (R a
 * constant in each call: the accumulators stay in registers). y[r * N]. */
static void dot_all_rows(const uint8_t *q, const uint16_t *d, const uint16_t *m, const int8_t *a,
                         const float *e, const float *s, int64_t K, int64_t R, float *y,
                         int64_t N) {
    int64_t nb = K / 32, r = 0;
    for (; r + 8 <= R; r += 8) tile(q, d, m, 0, 0, 1, a + r * K, e + r * nb, s + r * nb, K, 8, y + r * N, N);
    const int8_t *ar = a + r * K;
    const float *er = e + r * nb, *sr = s + r * nb;
    float *yr = y + r * N;
    switch (R - r) {
    case 7: tile(q, d, m, 0, 0, 1, ar, er, sr, K, 7, yr, N); break;
    case 6: tile(q, d, m, 0, 0, 1, ar, er, sr, K, 6, yr, N); break;
    case 5: tile(q, d, m, 0, 0, 1, ar, er, sr, K, 5, yr, N); break;
    case 4: tile(q, d, m, 0, 0, 1, ar, er, sr, K, 4, yr, N); break;
    case 3: tile(q, d, m, 0, 0, 1, ar, er, sr, K, 3, yr, N); break;
    case 2: tile(q, d, m, 0, 0, 1, ar, er, sr, K, 2, yr, N); break;
    case 1: tile(q, d, m, 0, 0, 1, ar, er, sr, K, 1, yr, N); break;
    default: break;
    }
}
#endif

/* The loop over weight rows (split between threads): one activation row takes two weight rows
 * at a time, several take one weight row against all of them (dot_all_rows). */
#ifdef ZF_VNNI
#define VECTOR_ROWS(Q, D, M)                                                                   \
    if (K % 64 == 0) {                                                                        \
        if (R == 1) {                                                                         \
            _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)") \
            for (int64_t n = 0; n < N - 1; n += 2)                                            \
                tile(Q + n * (K / 2), D + n * nb, M + n * nb, K / 2, nb, 2, a, e, s, K, 1,    \
                     y + n, N);                                                               \
            if (N % 2)                                                                        \
                tile(Q + (N - 1) * (K / 2), D + (N - 1) * nb, M + (N - 1) * nb, 0, 0, 1, a, e, \
                     s, K, 1, y + N - 1, N);                                                  \
            return;                                                                           \
        }                                                                                     \
        _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)") \
        for (int64_t n = 0; n < N; n++)                                                       \
            dot_all_rows(Q + n * (K / 2), D + n * nb, M + n * nb, a, e, s, K, R, y + n, N);   \
        return;                                                                               \
    }
#else
#define VECTOR_ROWS(Q, D, M)
#endif
#define MATVEC(Q, D, M)                                                                        \
    VECTOR_ROWS(Q, D, M)                                                                      \
    _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)") \
    for (int64_t n = 0; n < N; n++)                                                           \
        for (int64_t r = 0; r < R; r++)                                                       \
            y[r * N + n] = dot_row(Q + n * (K / 2), D + n * nb, M + n * nb, a + r * K,        \
                                   e + r * nb, s + r * nb, K);

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
        const uint8_t *qn = q + n * (K / 2);
        for (int64_t c0 = 0; c0 < nb;) {
            int c = K % 64 == 0 ? chunk_len(nb - c0) : 1;
            for (int bl = 0; bl < c; bl++) {
                int64_t b = c0 + bl;
                float db = h2f(d[n * nb + b]), mb = h2f(m[n * nb + b]);
                uint16_t *o = out + n * K + 32 * b;
                for (int j = 0; j < 32; j++) {
                    int code;
                    if (K % 64 == 0) code = code_of(qn + 16 * c0, code_pos(c, bl, j));
                    else code = j < 16 ? qn[16 * b + j] & 15 : qn[16 * b + j - 16] >> 4;
                    float w = db * (float)code + mb;
                    uint32_t u;
                    memcpy(&u, &w, 4);
                    u += 0x7fff + ((u >> 16) & 1);
                    o[j] = (uint16_t)(u >> 16);
                }
            }
            c0 += c;
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

/* One head: o (hd,) = softmax(q K^T scale) V over cache positions 0..p (kc, vc: (p + 1, hd)). */
static void attend(const float *q, const float *kc, const float *vc, int64_t p, int64_t hd,
                   float scale, float *sc, float *o) {
    float mx = -INFINITY, z = 0.f;
#ifdef ZF_VNNI
    if (hd % 16 == 0 && hd <= 256) {
        int nv = (int)(hd / 16);
        __m512 qv[16], ov[16];
        for (int u = 0; u < nv; u++) { qv[u] = _mm512_loadu_ps(q + 16 * u); ov[u] = _mm512_setzero_ps(); }
        for (int64_t j = 0; j <= p; j++) {
            __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kc + j * hd));
            for (int u = 1; u < nv; u++)
                acc = _mm512_fmadd_ps(qv[u], _mm512_loadu_ps(kc + j * hd + 16 * u), acc);
            sc[j] = _mm512_reduce_add_ps(acc) * scale;
            if (sc[j] > mx) mx = sc[j];
        }
        __m512 zv = _mm512_setzero_ps();
        for (int64_t j = 0; j <= p; j += 16) {
            __mmask16 mk = (__mmask16)(p + 1 - j >= 16 ? 0xffff : (1u << (p + 1 - j)) - 1);
            __m512 ev = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sc + j), _mm512_set1_ps(mx)));
            _mm512_mask_storeu_ps(sc + j, mk, ev);
            zv = _mm512_mask_add_ps(zv, mk, zv, ev);
        }
        z = _mm512_reduce_add_ps(zv);
        for (int64_t j = 0; j <= p; j++) {
            __m512 pj = _mm512_set1_ps(sc[j] / z);
            for (int u = 0; u < nv; u++)
                ov[u] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vc + j * hd + 16 * u), ov[u]);
        }
        for (int u = 0; u < nv; u++) _mm512_storeu_ps(o + 16 * u, ov[u]);
        return;
    }
#endif
    for (int64_t j = 0; j <= p; j++) {
        float acc = 0.f;
        for (int64_t u = 0; u < hd; u++) acc += q[u] * kc[j * hd + u];
        sc[j] = acc * scale;
        if (sc[j] > mx) mx = sc[j];
    }
    for (int64_t j = 0; j <= p; j++) { sc[j] = expf(sc[j] - mx); z += sc[j]; }
    for (int64_t u = 0; u < hd; u++) o[u] = 0.f;
    for (int64_t j = 0; j <= p; j++) {
        float pj = sc[j] / z;
        for (int64_t u = 0; u < hd; u++) o[u] += pj * vc[j * hd + u];
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
            for (int64_t i = 0; i < n_head; i++)          /* softmax(q K^T / sqrt(d)) V per head */
                attend(q + i * hd, kc0 + (i / rep) * max_len * hd, vc0 + (i / rep) * max_len * hd,
                       p, hd, scale, scores + i * max_len, att + r * hq + i * hd);
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
