/* The 16 x 16 float32 transpose in AVX-512 registers that the CPU kernels share (the GEMM's
 * packing, the 1x1 and 3x3 kernels with output channels in the lanes, the depthwise planes),
 * and the 8 x 8 one in AVX2 registers (the GEMM's transposed small products, Winograd's
 * weight taps). A transpose moves values without arithmetic, so every caller's bits are its
 * own. */
#ifndef TY_KERNELS_CPU_TRANSPOSE16_H
#define TY_KERNELS_CPU_TRANSPOSE16_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* On return r[j] lane i is the old r[i] lane j: 32-bit unpacks of row pairs, 64-bit unpacks
 * of pairs of pairs, then two rounds of 128-bit lane shuffles (32 + 32 shuffles). */
static inline __attribute__((target("avx512f"), always_inline)) void
ty_transpose16_f32(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* r[i + m], 128-bit lane L: column 4L + m of rows i.. */
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int m = 0; m < 4; m++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
        __m512 u1 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
        __m512 u3 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
        t[m] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + m] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[8 + m] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
        t[12 + m] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
    }
    for (int i = 0; i < 16; i++) {
        r[i] = t[i];
    }
}
/* On return r[j] lane i is the old r[i] lane j: 32-bit unpacks of row pairs, 64-bit
 * shuffles of pairs of pairs, then the 128-bit halves exchanged (24 shuffles). */
static inline __attribute__((target("avx2"), always_inline)) void
ty_transpose8_f32(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}

#endif

#endif
