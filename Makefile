# Tianyuan: `make test` runs every test, `make demo` runs the main job.
PY       ?= python3
VENV     := .venv
VPY      := $(VENV)/bin/python
BUILD    := build
ASAN     := build-asan
JOBS     ?= 2
CMAKE_PY := -DPython3_EXECUTABLE=$(abspath $(VPY))

.PHONY: all venv build build-asan test test-c test-asan test-py demo bench clean

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

build-asan:
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DTY_SANITIZE=ON -DTY_BUILD_PYTHON=OFF > /dev/null
	cmake --build $(ASAN) -j$(JOBS)

test-c: build
	$(BUILD)/ty_ctest

test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(ASAN)/ty_ctest

test-py: build
	PYTHONPATH=python $(VPY) -m pytest -q -x -n 2 tests/python

test: test-c test-asan test-py

# The data set comes from Debian's dataset-fashion-mnist (installed here when running as root).
demo: build
	@[ -d /usr/share/datasets/fashion-mnist ] || \
	  (apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update >/dev/null 2>&1 && apt-get install -y dataset-fashion-mnist >/dev/null 2>&1) || true)
	PYTHONPATH=python $(VPY) examples/demo.py

bench: build
	PYTHONPATH=python $(VPY) benchmarks/eager_overhead.py

clean:
	rm -rf $(BUILD) $(ASAN) python/tianyuan/_C*.so
