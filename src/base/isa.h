/* Hot loops are compiled for AVX-512, AVX2 and baseline x86-64, and the best one for the CPU
 * is picked at load time (GCC/Clang target_clones). The scalar math is the same C in every
 * clone and contraction is off, so the clones give the same bits. */
#ifndef TY_ISA_H
#define TY_ISA_H

#include <stdatomic.h>
#include <stdint.h>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define TY_NO_CLONES 1 /* ifunc resolvers run before the sanitizer runtime starts */
#endif
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TY_NO_CLONES) &&   \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define TY_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TY_CLONES
#endif

/* The instruction sets the kernels hand-written with intrinsics (GEMM, pooling) and the
 * generated elementwise loops (per-call variants, kernels/cpu/elemw_cpu.c) pick from, by level;
 * the reduction loops take TY_CLONES instead. Values are stable (tests and benchmarks name
 * them). */
typedef enum ty_isa {
    TY_ISA_AUTO = 0, /* the best the CPU supports */
    TY_ISA_GENERIC = 1,
    TY_ISA_AVX2 = 2, /* AVX2 + FMA */
    TY_ISA_AVX512 = 3,
} ty_isa;

/* The best instruction set this CPU runs (never TY_ISA_AUTO). The environment variable
 * TY_ISA=generic|avx2|avx512, read once, caps it (tests and benchmarks force a path with it;
 * it never raises the level past what the CPU runs). */
ty_isa ty_cpu_isa(void);

/* A kernel family's forced instruction set (tests and benchmarks pin a path): zero-initialized
 * it means TY_ISA_AUTO. get returns the forced set, or ty_cpu_isa() when none is; set forces
 * isa (one the CPU cannot run, or AUTO, goes back to detection) and returns the set now used. */
typedef atomic_int ty_isa_override;
ty_isa ty_isa_override_get(ty_isa_override *o);
ty_isa ty_isa_override_set(ty_isa_override *o, ty_isa isa);

/* Per-core cache sizes in bytes from cpuid's deterministic cache parameters (leaf 4 on Intel,
 * 0x8000001D on AMD); 0 where unknown. Detected once. */
typedef struct ty_cpu_caches {
    int64_t l1d, l2;
} ty_cpu_caches;
ty_cpu_caches ty_cpu_cache_sizes(void);

#endif
