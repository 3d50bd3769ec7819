/* Which SIMD kernels this CPU can run and how large its caches are, detected once for every
 * kernel family from cpuid (never from the brand string, which virtual machines make
 * generic). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "base/isa.h"

/* TY_ISA=generic|avx2|avx512 caps the level; anything else (or unset) leaves it alone. */
static int
isa_cap_from_env(void)
{
    const char *e = getenv("TY_ISA");
    if (!e) {
        return TY_ISA_AVX512;
    }
    if (strcmp(e, "generic") == 0) {
        return TY_ISA_GENERIC;
    }
    if (strcmp(e, "avx2") == 0) {
        return TY_ISA_AVX2;
    }
    return TY_ISA_AVX512;
}

ty_isa
ty_isa_override_get(ty_isa_override *o)
{
    int f = atomic_load_explicit(o, memory_order_relaxed);
    return f == TY_ISA_AUTO ? ty_cpu_isa() : (ty_isa)f;
}

ty_isa
ty_isa_override_set(ty_isa_override *o, ty_isa isa)
{
    if (isa <= TY_ISA_AUTO || isa > ty_cpu_isa()) {
        isa = TY_ISA_AUTO;
    }
    atomic_store(o, (int)isa);
    return ty_isa_override_get(o);
}

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
        int cap = isa_cap_from_env();
        d = d < cap ? d : cap;
        atomic_store_explicit(&detected, d, memory_order_relaxed);
    }
    return (ty_isa)d;
#else
    return TY_ISA_GENERIC;
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* Walks the deterministic cache parameters of `leaf` (4 on Intel, 0x8000001D on AMD: the same
 * layout) and fills the L1 data and L2 sizes it lists. Returns 0 when the leaf lists none. */
static int
caches_from_leaf(unsigned leaf, ty_cpu_caches *out)
{
    unsigned max = __get_cpuid_max(leaf & 0x80000000u, NULL);
    if (max < leaf) {
        return 0;
    }
    int found = 0;
    for (unsigned sub = 0; sub < 16; sub++) {
        unsigned eax, ebx, ecx, edx;
        __cpuid_count(leaf, sub, eax, ebx, ecx, edx);
        (void)edx;
        unsigned type = eax & 0x1f, level = (eax >> 5) & 0x7;
        if (type == 0) {
            break;
        }
        int64_t bytes = (int64_t)((ebx >> 22) + 1) * (((ebx >> 12) & 0x3ff) + 1) *
                        ((ebx & 0xfff) + 1) * ((int64_t)ecx + 1);
        if (level == 1 && type == 1) { /* data */
            out->l1d = bytes;
            found = 1;
        } else if (level == 2 && (type == 3 || type == 1)) { /* unified (or data) */
            out->l2 = bytes;
            found = 1;
        }
    }
    return found;
}
#endif

ty_cpu_caches
ty_cpu_cache_sizes(void)
{
    static atomic_int done;
    static _Atomic int64_t l1d, l2;
    if (!atomic_load_explicit(&done, memory_order_acquire)) {
        ty_cpu_caches c = {0, 0};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (!caches_from_leaf(4, &c)) {
            caches_from_leaf(0x8000001Du, &c);
        }
#endif
        atomic_store_explicit(&l1d, c.l1d, memory_order_relaxed);
        atomic_store_explicit(&l2, c.l2, memory_order_relaxed);
        atomic_store_explicit(&done, 1, memory_order_release); /* a race stores the same */
    }
    ty_cpu_caches c = {atomic_load_explicit(&l1d, memory_order_relaxed),
                       atomic_load_explicit(&l2, memory_order_relaxed)};
    return c;
}
