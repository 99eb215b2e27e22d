/* zeroformer's 4-bit x 8-bit matrix-vector kernel (CPU: AVX-512 VNNI, AMX int8 tiles where the CPU
 * has them for several rows; a portable C loop elsewhere).
 *
 * Weights, per output row n and block b of 32 inputs (the GGUF Q4_1 layout):
 *     w[n, 32b + j] = d[n, b] * q[n, 32b + j] + m[n, b],      q in 0..15, d and m fp16
 * Activations, per row r of x and block b, quantized on the fly to int8 (llama.cpp's Q8 scheme):
 *     x[r, 32b + j] ~= e[r, b] * a[r, 32b + j],   e = max|x_block| / 127,  a in -127..127
 * so that, with S[r, n, b] = sum_j q a the block's exact integer dot product,
 *     y[r, n] = sum_b  S d e + m (e sum_j a)
 * summed over b in order, as acc = fma(S, d e, acc); acc = fma(m, s, acc) (s = e sum_j a) for
 * every path (portable, VNNI, AMX): a row's output does not depend on how many rows run with it.
 *
 * Layout (nn/q4.py:pack_q4): weight rows in groups of 16 (N padded with zero rows to a multiple of
 * 16). Group G, block b: 256 bytes, byte 64 i + 4 n + t (i < 4, n < 16, t < 4) holding
 *     q[16 G + n, 32 b + 8 i + t] (low nibble)  and  q[16 G + n, 32 b + 8 i + 4 + t] (high nibble)
 * so that the unpacked nibbles are 8 vectors of 64 bytes, vector v = 2 i + (high), lane n (32-bit)
 * = weights 4 v .. 4 v + 3 of row n: vpdpbusd against 4 activations broadcast to every lane gives
 * 16 rows' partial sums, and the 8 vectors are AMX's B tile (8 rows of K/4 = 1 .. 16 columns).
 * Scales: per group and block, 32 fp16: d of the 16 rows, then m of the 16 rows.
 */
#define _GNU_SOURCE                    /* syscall() */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define ZF_VNNI 1
#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define ZF_AMX 1
#endif
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

/* AMX needs the kernel's permission for its tile state (Linux 5.16+): asked once. */
static int amx_ok = -1;
int zf_q4_has_amx(void) {
#ifdef ZF_AMX
    if (amx_ok < 0) amx_ok = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
                                     18 /* XFEATURE_XTILEDATA */) == 0;
    return amx_ok;
#else
    return 0;
#endif
}
static int max_path = 2;        /* 0 portable, 1 VNNI, 2 AMX: tests compare the paths */
void zf_q4_set_path(int path) { max_path = path; }

/* x (K,) float -> a (K,) int8, e (K/32,) scales, s (K/32,) = e * sum(a) of the block:
 * e = max|x_block| / 127, a = round(x / e) (to nearest even, as lrintf) clamped to +-127. */
static void quantize_x(const float *x, int64_t K, int8_t *a, float *e, float *s) {
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xb = x + 32 * b;
        int sum = 0;
        float eb, inv;
#ifdef ZF_VNNI
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        eb = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1))) / 127.f;
        inv = eb > 0.f ? 1.f / eb : 0.f;
        __m512 vi = _mm512_set1_ps(inv);
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vi));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vi));
        i0 = _mm512_max_epi32(_mm512_min_epi32(i0, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
        i1 = _mm512_max_epi32(_mm512_min_epi32(i1, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
        sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        _mm_storeu_si128((__m128i *)(a + 32 * b), _mm512_cvtepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(a + 32 * b + 16), _mm512_cvtepi32_epi8(i1));
#else
        float amax = 0.f;
        for (int j = 0; j < 32; j++) { float v = fabsf(xb[j]); if (v > amax) amax = v; }
        eb = amax / 127.f;
        inv = eb > 0.f ? 1.f / eb : 0.f;
        for (int j = 0; j < 32; j++) {
            int v = (int)lrintf(xb[j] * inv);
            v = v > 127 ? 127 : (v < -127 ? -127 : v);
            sum += v;
            a[32 * b + j] = (int8_t)v;
        }
#endif
        e[b] = eb; s[b] = eb * (float)sum;
    }
}

/* Code j of block b of row n (0..15) of a group (qg: the group's codes). */
static inline int code_at(const uint8_t *qg, int64_t b, int n, int j) {
    uint8_t byte = qg[256 * b + 64 * (j / 8) + 4 * n + j % 4];
    return (j % 8) < 4 ? byte & 15 : byte >> 4;
}

/* The portable loop: rows r < R of y (stride N) for the group's rows n < nv. */
static void group_portable(const uint8_t *qg, const uint16_t *sg, int64_t nb, const int8_t *a,
                           const float *e, const float *s, int64_t K, int64_t R, float *y,
                           int64_t N, int nv) {
    for (int64_t r = 0; r < R; r++)
        for (int n = 0; n < nv; n++) {
            float acc = 0.f;
            for (int64_t b = 0; b < nb; b++) {
                int dot = 0;
                for (int j = 0; j < 32; j++) dot += code_at(qg, b, n, j) * a[r * K + 32 * b + j];
                float de = h2f(sg[32 * b + n]) * e[r * nb + b];
                acc = fmaf((float)dot, de, acc);
                acc = fmaf(h2f(sg[32 * b + 16 + n]), s[r * nb + b], acc);
            }
            y[r * N + n] = acc;
        }
}

#ifdef ZF_VNNI
/* The 8 code vectors of block b (see the layout). */
static inline __attribute__((always_inline)) void unpack8(const uint8_t *qb, __m512i w[8]) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int i = 0; i < 4; i++) {
        __m512i p = _mm512_loadu_si512((const void *)(qb + 64 * i));
        w[2 * i] = _mm512_and_si512(p, low);
        w[2 * i + 1] = _mm512_and_si512(_mm512_srli_epi16(p, 4), low);
    }
}

/* The float part of one block for one row: acc = fma(S, d e, acc); acc = fma(m, s, acc). */
static inline __attribute__((always_inline)) __m512 scale_add(__m512i S, __m512 dv, __m512 mv,
                                                              float e, float s, __m512 acc) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_mul_ps(dv, _mm512_set1_ps(e)), acc);
    return _mm512_fmadd_ps(mv, _mm512_set1_ps(s), acc);
}

/* A group of 16 weight rows against R <= 8 activation rows (R a constant after inlining). */
static inline __attribute__((always_inline)) void group_vnni(
        const uint8_t *qg, const uint16_t *sg, int64_t nb, const int8_t *a, const float *e,
        const float *s, int64_t K, const int R, float *y, int64_t N, __mmask16 keep) {
    __m512 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i w[8];
        unpack8(qg + 256 * b, w);
        __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sg + 32 * b)));
        __m512 mv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sg + 32 * b + 16)));
        for (int r = 0; r < R; r++) {
            const int8_t *ab = a + r * K + 32 * b;
            __m512i S = _mm512_setzero_si512();
            for (int v = 0; v < 8; v++) {
                int32_t four;
                memcpy(&four, ab + 4 * v, 4);
                S = _mm512_dpbusd_epi32(S, w[v], _mm512_set1_epi32(four));
            }
            acc[r] = scale_add(S, dv, mv, e[r * nb + b], s[r * nb + b], acc[r]);
        }
    }
    for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(y + r * N, keep, acc[r]);
}

static void group_rows(const uint8_t *qg, const uint16_t *sg, int64_t nb, const int8_t *a,
                       const float *e, const float *s, int64_t K, int64_t R, float *y, int64_t N,
                       __mmask16 keep) {
    for (int64_t r = 0; r < R;) {
        int64_t left = R - r;
        const int8_t *ar = a + r * K;
        const float *er = e + r * nb, *sr = s + r * nb;
        float *yr = y + r * N;
        switch (left >= 8 ? 8 : left) {
        case 8: group_vnni(qg, sg, nb, ar, er, sr, K, 8, yr, N, keep); r += 8; break;
        case 7: group_vnni(qg, sg, nb, ar, er, sr, K, 7, yr, N, keep); r += 7; break;
        case 6: group_vnni(qg, sg, nb, ar, er, sr, K, 6, yr, N, keep); r += 6; break;
        case 5: group_vnni(qg, sg, nb, ar, er, sr, K, 5, yr, N, keep); r += 5; break;
        case 4: group_vnni(qg, sg, nb, ar, er, sr, K, 4, yr, N, keep); r += 4; break;
        case 3: group_vnni(qg, sg, nb, ar, er, sr, K, 3, yr, N, keep); r += 3; break;
        case 2: group_vnni(qg, sg, nb, ar, er, sr, K, 2, yr, N, keep); r += 2; break;
        default: group_vnni(qg, sg, nb, ar, er, sr, K, 1, yr, N, keep); r += 1; break;
        }
    }
}
#endif

#ifdef ZF_AMX
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) TileConfig;

/* Groups [g0, g1) against R <= 16 rows with AMX, blocks in runs of up to AMX_RUN: (1) unpack the
 * run's code vectors to memory, (2) per block, tile 0/3 = the R rows' 32 activations, tile 1/4 =
 * the block's 8 code vectors, tile 2/5 = S (R x 16 int32, exact: the same numbers as vpdpbusd;
 * two blocks in flight), stored to memory, (3) the same float part as group_vnni, in block order.
 * (Phases rather than block by block: a tile load right after the vector stores it reads, or a
 * vector load right after a tile store, waits for them.) */
#define AMX_RUN 32
static void groups_amx(const uint8_t *q, const uint16_t *sc, int64_t g0, int64_t g1, int64_t nb,
                       const int8_t *a, const float *e, const float *s, int64_t K, int64_t R,
                       float *y, int64_t N) {
    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 6; i += 3) {
        cfg.rows[i] = (uint8_t)R; cfg.colsb[i] = 32;
        cfg.rows[i + 1] = 8; cfg.colsb[i + 1] = 64;
        cfg.rows[i + 2] = (uint8_t)R; cfg.colsb[i + 2] = 64;
    }
    _tile_loadconfig(&cfg);
    static __thread __m512i wbuf[AMX_RUN][8];
    static __thread int32_t sbuf[AMX_RUN][16 * 16] __attribute__((aligned(64)));
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *qg = q + g * nb * 256;
        const uint16_t *sg = sc + g * nb * 32;
        __m512 acc[16];
        for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += AMX_RUN) {
            int run = nb - b0 < AMX_RUN ? (int)(nb - b0) : AMX_RUN;
            for (int i = 0; i < run; i++) unpack8(qg + 256 * (b0 + i), wbuf[i]);
            int i = 0;
            for (; i + 1 < run; i += 2) {
                _tile_loadd(1, wbuf[i], 64);
                _tile_loadd(0, a + 32 * (b0 + i), K);
                _tile_zero(2);
                _tile_loadd(4, wbuf[i + 1], 64);
                _tile_loadd(3, a + 32 * (b0 + i + 1), K);
                _tile_zero(5);
                _tile_dpbsud(2, 0, 1);
                _tile_dpbsud(5, 3, 4);
                _tile_stored(2, sbuf[i], 64);
                _tile_stored(5, sbuf[i + 1], 64);
            }
            if (i < run) {
                _tile_loadd(1, wbuf[i], 64);
                _tile_loadd(0, a + 32 * (b0 + i), K);
                _tile_zero(2);
                _tile_dpbsud(2, 0, 1);
                _tile_stored(2, sbuf[i], 64);
            }
            /* while the float part runs, fetch the next run's codes and scales (the weights
             * stream from memory once per step; the hardware prefetcher alone left it waiting) */
            const uint8_t *nq = b0 + run < nb ? qg + 256 * (b0 + run) : qg + 256 * nb;
            const uint16_t *ns = b0 + run < nb ? sg + 32 * (b0 + run) : sg + 32 * nb;
            int nrun = (int)(b0 + run < nb ? (nb - b0 - run < AMX_RUN ? nb - b0 - run : AMX_RUN)
                                           : (g + 1 < g1 ? (nb < AMX_RUN ? nb : AMX_RUN) : 0));
            for (i = 0; i < run; i++) {
                int64_t b = b0 + i;
                if (i < nrun) {
                    for (int c = 0; c < 4; c++) _mm_prefetch((const char *)(nq + 256 * i + 64 * c), _MM_HINT_T0);
                    _mm_prefetch((const char *)(ns + 32 * i), _MM_HINT_T0);
                }
                __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sg + 32 * b)));
                __m512 mv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sg + 32 * b + 16)));
                for (int r = 0; r < R; r++)
                    acc[r] = scale_add(_mm512_load_si512((const void *)(sbuf[i] + 16 * r)), dv, mv,
                                       e[r * nb + b], s[r * nb + b], acc[r]);
            }
        }
        int64_t left = N - 16 * g;
        __mmask16 keep = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
        for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(y + r * N + 16 * g, keep, acc[r]);
    }
    _tile_release();
}
#endif

/* y (R, N) = the quantized rows (a, e, s) times the packed weights (q, sc): groups of 16 weight
 * rows split between threads. */
static void matvec(const uint8_t *q, const uint16_t *sc, int64_t N, int64_t K, const int8_t *a,
                   const float *e, const float *s, int64_t R, float *y, int threads) {
    int64_t nb = K / 32, G = (N + 15) / 16;
    (void)threads;
#ifdef ZF_AMX
    if (R >= 2 && max_path >= 2 && zf_q4_has_amx()) {
        for (int64_t r0 = 0; r0 < R; r0 += 16) {
            int64_t rr = R - r0 < 16 ? R - r0 : 16;
#pragma omp parallel num_threads(threads) if (threads > 1 && N >= 256)
            {
                int64_t g0 = 0, g1 = G;
#ifdef _OPENMP
                int nt = omp_get_num_threads(), it = omp_get_thread_num();
                g0 = G * it / nt; g1 = G * (it + 1) / nt;
#endif
                groups_amx(q, sc, g0, g1, nb, a + r0 * K, e + r0 * nb, s + r0 * nb, K, rr,
                           y + r0 * N, N);
            }
        }
        return;
    }
#endif
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)
    for (int64_t g = 0; g < G; g++) {
        int64_t left = N - 16 * g;
        const uint8_t *qg = q + g * nb * 256;
        const uint16_t *sg = sc + g * nb * 32;
#ifdef ZF_VNNI
        if (max_path >= 1) {
            __mmask16 keep = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
            group_rows(qg, sg, nb, a, e, s, K, R, y + 16 * g, N, keep);
            continue;
        }
#endif
        group_portable(qg, sg, nb, a, e, s, K, R, y + 16 * g, N, left >= 16 ? 16 : (int)left);
    }
}

/* y (R, N) = x (R, K) W^T for the packed W (pack_q4: q, sc).
 * work: R * (K + 8 * K/32) bytes of scratch for the quantized activations. */
void zf_q4_matmul(const float *x, int64_t R, int64_t K, const uint8_t *q, const uint16_t *sc,
                  int64_t N, float *y, void *work, int threads) {
    int64_t nb = K / 32;
    int8_t *a = (int8_t *)work;
    float *e = (float *)(a + R * K), *s = e + R * nb;
    for (int64_t r = 0; r < R; r++) quantize_x(x + r * K, K, a + r * K, e + r * nb, s + r * nb);
    matvec(q, sc, N, K, a, e, s, R, y, threads);
}

/* The weights as bf16 (N, K), w = d q + m rounded to nearest even: for many rows at once
 * (a prompt), where one bf16 matrix product beats R matrix-vector products (nn/q4.py). */
static inline uint16_t bf16_rne(float w) {
    uint32_t u;
    memcpy(&u, &w, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

void zf_q4_dequant_bf16(const uint8_t *q, const uint16_t *sc, int64_t N, int64_t K,
                        uint16_t *out, int threads) {
    int64_t nb = K / 32, G = (N + 15) / 16;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && N >= 256)
#endif
    for (int64_t g = 0; g < G; g++) {
        const uint8_t *qg = q + g * nb * 256;
        const uint16_t *sg = sc + g * nb * 32;
        for (int n = 0; n < 16 && 16 * g + n < N; n++) {
            for (int64_t b = 0; b < nb; b++) {
                float db = h2f(sg[32 * b + n]), mb = h2f(sg[32 * b + 16 + n]);
                uint16_t *o = out + (16 * g + n) * K + 32 * b;
                const uint8_t *qb = qg + 256 * b + 4 * n;
#ifdef ZF_VNNI
                uint64_t codes[4];                /* row n's 32 codes of block b, in order */
                for (int i = 0; i < 4; i++) {
                    uint32_t word;
                    memcpy(&word, qb + 64 * i, 4);
                    codes[i] = (uint64_t)(word & 0x0f0f0f0fu) | (uint64_t)((word >> 4) & 0x0f0f0f0fu) << 32;
                }
                for (int h = 0; h < 2; h++) {
                    __m512 w = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(db), _mm512_cvtepi32_ps(
                        _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + 2 * h))))),
                        _mm512_set1_ps(mb));             /* d q + m: two roundings, as in C */
                    __m512i u = _mm512_castps_si512(w);         /* round to nearest even */
                    u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                        _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
                    _mm256_storeu_si256((__m256i *)(o + 16 * h),
                                        _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16)));
                }
                continue;
#endif
                for (int i = 0; i < 4; i++)
                    for (int t = 0; t < 4; t++) {
                        uint8_t byte = qb[64 * i + t];
                        o[8 * i + t] = bf16_rne(db * (float)(byte & 15) + mb);
                        o[8 * i + 4 + t] = bf16_rne(db * (float)(byte >> 4) + mb);
                    }
            }
        }
    }
}
