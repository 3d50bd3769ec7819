# Tianyuan: `make test` runs every test, `make demo` runs the main job.
PY       ?= python3
VENV     := .venv
VPY      := $(VENV)/bin/python
BUILD    := build
ASAN     := build-asan
PYASAN   := $(abspath $(ASAN))/pkg
JOBS     ?= 2
CMAKE_PY := -DPython3_EXECUTABLE=$(abspath $(VPY))

.PHONY: all venv build build-asan mpi test test-layers test-c test-asan test-py test-py-asan test-fuzz fuzz demo bench clean

all: build

$(VENV)/.stamp: requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.stamp

build: venv
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_PY) > /dev/null
	cmake --build $(BUILD) -j$(JOBS)

# One sanitized build serves the C tests and the Python suite (its extension goes to a copy of
# the package, so the regular build stays importable): a second one cost CI a few minutes.
build-asan: venv
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DTY_SANITIZE=ON -DTY_BUILD_PYTHON=ON $(CMAKE_PY) \
	  -DTY_PY_OUT_DIR=$(PYASAN)/tianyuan > /dev/null
	cmake --build $(ASAN) -j$(JOBS)

# Layers never reach upward: the include table in tools/check_layers.py.
test-layers:
	$(PY) tools/check_layers.py

# Open MPI for the communicator's multi-process tests (installed here when running as root,
# like the demo's data set; without it they skip with a message).
mpi:
	@command -v mpirun >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  (apt-get install -y openmpi-bin libopenmpi-dev >/dev/null 2>&1 || \
	   (apt-get update >/dev/null 2>&1 && apt-get install -y openmpi-bin libopenmpi-dev >/dev/null 2>&1) || true)

test-c: build mpi
	$(BUILD)/ty_ctest
	tests/dist/run.sh $(BUILD)

test-asan: build-asan mpi
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(ASAN)/ty_ctest
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 tests/dist/run.sh $(ASAN)

# The op-table suites record which ops ran in which mode (per worker, under OPCOV); the
# report merges them, prints the coverage table and fails on a gap (tests/python/ops).
OPCOV    := $(abspath $(BUILD))/op-coverage
test-py: build
	rm -rf $(OPCOV)
	TY_OP_COVERAGE_DIR=$(OPCOV) PYTHONPATH=python $(VPY) -m pytest -q -x -n 2 tests/python
	PYTHONPATH=python:tests/python $(VPY) -m ops.op_coverage $(OPCOV)

# The Python suite on an ASan+UBSan build of the extension (in a copy of the package, so the
# regular build stays importable). A deliberately crashing DataLoader worker must see its own
# SIGSEGV (handle_segv=0); the out-of-memory tests need failing allocations (may_return_null).
SAN_RT   = $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libubsan.so)
test-py-asan: build-asan
	mkdir -p $(PYASAN)
	tar -C python -cf - --exclude='_C*.so' --exclude='__pycache__' tianyuan | tar -C $(PYASAN) -xf -
	LD_PRELOAD="$(SAN_RT)" ASAN_OPTIONS=detect_leaks=0:handle_segv=0:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 TY_PYTHON_DIR=$(PYASAN) \
	  $(VPY) -m pytest -q -x -n 2 -p no:cacheprovider tests/python

# The .tym fuzzer (clang libFuzzer, ASan + UBSan; skipped with a message where clang lacks it):
# `make fuzz FUZZ_SECONDS=600` fuzzes from tests/fuzz/corpus into build-fuzz/corpus;
# make test replays the committed corpus and regressions, then fuzzes briefly.
FUZZ_SECONDS      ?= 60
FUZZ_TEST_SECONDS ?= 20
fuzz:
	JOBS=$(JOBS) tests/fuzz/fuzz.sh $(FUZZ_SECONDS)

test-fuzz:
	JOBS=$(JOBS) tests/fuzz/fuzz.sh --test $(FUZZ_TEST_SECONDS)

test: mpi test-layers test-c test-asan test-py test-py-asan test-fuzz

# The data set comes from Debian's dataset-fashion-mnist (installed here when running as root).
# Trains, dumps the model to build/fashion_mnist.tym, runs it with build/classify (the C
# runtime alone) and fails unless both accuracies are the same. DEMO_ARGS go to train.py.
demo: build
	@[ -d /usr/share/datasets/fashion-mnist ] || \
	  (apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update >/dev/null 2>&1 && apt-get install -y dataset-fashion-mnist >/dev/null 2>&1) || true)
	PYTHONPATH=python $(VPY) examples/demo.py --classify $(BUILD)/classify \
	  --model $(BUILD)/fashion_mnist.tym $(DEMO_ARGS)

bench: build
	PYTHONPATH=python $(VPY) benchmarks/eager_overhead.py

clean:
	rm -rf $(BUILD) $(ASAN) build-pyasan build-fuzz python/tianyuan/_C*.so
