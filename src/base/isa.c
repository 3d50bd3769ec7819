/* Which SIMD kernels this CPU can run, detected once for every kernel family. */
#include <stdatomic.h>

#include "base/isa.h"

ty_isa
ty_cpu_isa(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static atomic_int detected; /* 0 = not yet; a benign race recomputes the same value */
    int d = atomic_load_explicit(&detected, memory_order_relaxed);
    if (d == 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) {
            d = TY_ISA_AVX512;
        } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            d = TY_ISA_AVX2;
        } else {
            d = TY_ISA_GENERIC;
        }
        atomic_store_explicit(&detected, d, memory_order_relaxed);
    }
    return (ty_isa)d;
#else
    return TY_ISA_GENERIC;
#endif
}
