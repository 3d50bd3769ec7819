/* The 16 x 16 float32 transpose in AVX-512 registers that the CPU kernels share (the GEMM's
 * packing, the 1x1 and 3x3 kernels with output channels in the lanes, the depthwise planes).
 * A transpose moves values without arithmetic, so every caller's bits are its own. */
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
#endif

#endif
