#!/bin/sh
# Builds and runs the .tym libFuzzer target (fuzz_tym.c) under ASan + UBSan, leaks detected.
#   tests/fuzz/fuzz.sh SECONDS          fuzz for SECONDS from the committed corpus; new inputs go
#                                       to build-fuzz/corpus (kept between runs, not committed)
#   tests/fuzz/fuzz.sh --test SECONDS   replay every committed input, then a short run from a
#                                       fresh scratch directory (make test)
# Findings land in build-fuzz/artifacts/; commit each, with its fix, in tests/fuzz/regressions/.
# Where clang has no libFuzzer, it says so and exits 0 (the rest of make test still runs).
set -e
cd "$(dirname "$0")/../.."
BUILD=${TY_FUZZ_BUILD:-build-fuzz}
CC=${FUZZ_CC:-clang}
MODE=fuzz
if [ "$1" = "--test" ]; then MODE=test; shift; fi
SECONDS_TO_RUN=${1:-60}

mkdir -p "$BUILD/artifacts"
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > "$BUILD/probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$BUILD/probe.c" -o "$BUILD/probe" >/dev/null 2>&1; then
    echo "fuzz: '$CC' cannot build a libFuzzer target (-fsanitize=fuzzer): fuzzing SKIPPED"
    exit 0
fi
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTY_FUZZ=ON \
      -DTY_BUILD_PYTHON=OFF > /dev/null
cmake --build "$BUILD" -j"${JOBS:-2}" --target fuzz_tym > /dev/null

export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FLAGS="-timeout=10 -rss_limit_mb=2048 -dict=tests/fuzz/tym.dict -artifact_prefix=$BUILD/artifacts/"
if [ "$MODE" = test ]; then
    echo "fuzz: replaying $(ls tests/fuzz/corpus tests/fuzz/regressions | grep -c .) committed inputs"
    "$BUILD/fuzz_tym" $FLAGS tests/fuzz/corpus/* tests/fuzz/regressions/* 2>"$BUILD/replay.log" ||
        { cat "$BUILD/replay.log"; exit 1; }
    rm -rf "$BUILD/corpus-test" && mkdir -p "$BUILD/corpus-test"
    set -- "$BUILD/corpus-test"
else
    mkdir -p "$BUILD/corpus"
    set -- "$BUILD/corpus"
fi
echo "fuzz: fuzzing for ${SECONDS_TO_RUN}s"
"$BUILD/fuzz_tym" $FLAGS -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 \
    "$@" tests/fuzz/corpus tests/fuzz/regressions 2>"$BUILD/fuzz.log" ||
    { tail -60 "$BUILD/fuzz.log"; exit 1; }
grep -E "DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" "$BUILD/fuzz.log"
