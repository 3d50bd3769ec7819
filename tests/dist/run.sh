#!/bin/sh
# The communicator's multi-process tests: tests/dist/dist_prog.c under mpirun.
#
#   tests/dist/run.sh BUILD_DIR
#
# 2 and 4 ranks (oversubscribed: CI has 2 cores) run every collective; a rank that skips a
# collective makes the others fail with a timeout naming it; a rank killed mid-job ends the
# job instead of hanging. Skips (exit 0, with a message) where mpirun or libmpi is missing.
# Under an ASan build, leaks inside Open MPI's own libraries are suppressed (lsan.supp);
# ours are not.
set -u
build=${1:?usage: run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
prog=$build/ty_dist_prog

if ! command -v mpirun >/dev/null 2>&1; then
    echo "dist tests: skipped (no mpirun: install openmpi-bin libopenmpi-dev)"
    exit 0
fi
have_lib=${TY_MPI_LIBRARY:-}
for lib in /usr/lib/*/libmpi.so.40 /usr/lib/libmpi.so.40 /usr/local/lib/libmpi.so.40; do
    [ -e "$lib" ] && have_lib=$lib
done
if [ -z "$have_lib" ]; then
    echo "dist tests: skipped (no libmpi.so.40: install libopenmpi-dev or set TY_MPI_LIBRARY)"
    exit 0
fi
[ -x "$prog" ] || { echo "dist tests: $prog is not built"; exit 1; }

# mpirun refuses root without these; tests run as root in CI containers.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# full stacks through MPI's libraries (built without frame pointers), so that the
# suppressions see MPI's frames (ASan builds only)
export ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

fail() {
    echo "dist tests: FAILED: $1"
    sed 's/^/    /' "$out"
    failed=1
}

# every rank of an n-rank job says ok
collectives() {
    n=$1
    shift
    timeout 120 mpirun -np "$n" "$@" "$prog" collectives >"$out" 2>&1
    rc=$?
    oks=$(grep -o 'rank [0-9]*: ok' "$out" | sort -u | wc -l) # rank lines may interleave
    if [ $rc -ne 0 ] || [ "$oks" -ne "$n" ]; then
        fail "collectives on $n ranks (exit $rc, $oks ranks ok)"
    else
        echo "dist tests: collectives on $n ranks ok"
    fi
}

collectives 2
collectives 4 --oversubscribe

# rank 2 never arrives: rank 0 waits for its message, rank 1 in an all_reduce; both fail
# within the 0.5 s timeout naming the peer / the collective, then every call fails at once
timeout 60 mpirun -np 3 --oversubscribe "$prog" timeout >"$out" 2>&1
rc=$?
if [ $rc -eq 124 ] || ! grep -q 'rank 0: ok' "$out" || ! grep -q 'rank 1: ok' "$out" ||
        ! grep -q 'rank 0: error: recv: timed out after 0.5 s waiting for rank 2 of group 0' "$out" ||
        ! grep -q 'rank 1: error: all_reduce: timed out after 0.5 s' "$out"; then
    fail "a missing rank did not make the others time out naming it (exit $rc)"
else
    echo "dist tests: a missing rank makes the others time out naming the peer / collective"
fi

# rank 1 dies (SIGKILL): the job ends, non-zero, instead of hanging
timeout 60 mpirun -np 2 "$prog" dead >"$out" 2>&1
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    fail "a dead rank: exit $rc (want the job to end with an error)"
else
    echo "dist tests: a dead rank ends the job (exit $rc)"
fi

# rank 0 ends the job (ty_dist_abort, code 3) while rank 1 waits in an all_reduce
timeout 60 mpirun -np 2 "$prog" abort >"$out" 2>&1
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ] || grep -q 'outlived' "$out"; then
    fail "ty_dist_abort did not end the job (exit $rc)"
else
    echo "dist tests: ty_dist_abort ends the job (exit $rc)"
fi

# The NCCL engine on stand-ins for NCCL and CUDA made of MPI calls and host memory
# (fake_nccl.c, fake_cudart.c): its id bootstrap, staging, roots, grouped sends and groups
# (4 ranks: a group of some of them)
if [ -e "$build/fake_gpu/libnccl.so.2" ]; then
    for n in 2 4; do
        LD_LIBRARY_PATH="$build/fake_gpu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
            TY_DIST_BACKEND=nccl timeout 120 mpirun -np $n --oversubscribe -x LD_LIBRARY_PATH \
            -x TY_DIST_BACKEND "$prog" collectives >"$out" 2>&1
        rc=$?
        oks=$(grep -o 'rank [0-9]*: ok' "$out" | sort -u | wc -l)
        if [ $rc -ne 0 ] || [ "$oks" -ne $n ]; then
            fail "collectives on the NCCL engine over stand-ins, $n ranks (exit $rc)"
        else
            echo "dist tests: collectives on the NCCL engine (stand-in NCCL and CUDA), $n ranks ok"
        fi
    done
fi

# NCCL, where this machine has two GPUs and NCCL (skipped with a message elsewhere)
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$gpus" -ge 2 ] && ldconfig -p 2>/dev/null | grep -q 'libnccl.so.2'; then
    TY_DIST_BACKEND=nccl timeout 120 mpirun -np 2 -x TY_DIST_BACKEND "$prog" collectives \
        >"$out" 2>&1
    rc=$?
    oks=$(grep -o 'rank [0-9]*: ok' "$out" | sort -u | wc -l)
    if [ $rc -ne 0 ] || [ "$oks" -ne 2 ]; then
        fail "collectives on NCCL, 2 GPUs (exit $rc)"
    else
        echo "dist tests: collectives on NCCL (2 GPUs) ok"
    fi
else
    echo "dist tests: NCCL skipped (needs 2 GPUs and libnccl.so.2; this machine has $gpus GPUs)"
fi

exit $failed
