"""Top-level package: logging, allocator getters, vendor getters, config, debug_param."""
import io
import logging

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional.debug_param as dp


@pytest.fixture
def restore_config():
    saved = dict(ty.config._settings)
    yield
    for name, value in saved.items():  # through set(): the kernel policy reaches C too
        ty.config.set(name, value)


# ---------------------------------------------------------------- logging
def test_logger_level_file_and_no_propagation(tmp_path):
    log = ty.get_logger("tianyuan.test_toplevel")
    assert log is ty.get_logger("tianyuan.test_toplevel") and not log.propagate
    stream = io.StringIO()
    ty.set_log_file(stream)
    path = tmp_path / "log.txt"
    ty.set_log_file(str(path))
    old = ty.set_log_level("WARNING")
    try:
        log.info("quiet line")
        log.warning("loud line %d", 7)
        ty.enable_debug_log()
        assert log.level == logging.DEBUG
        log.debug("debug line")
        late = ty.get_logger("tianyuan.test_toplevel_late")  # made after set_log_file
        late.info("late line")
    finally:
        ty.set_log_level(old)
        from tianyuan import logger as L
        for h in L._state["file_handlers"][-2:]:
            for lg in L._state["loggers"]:
                lg.removeHandler(h)
            h.close()
        del L._state["file_handlers"][-2:]
    text = stream.getvalue()
    assert "quiet line" not in text
    assert "WARNING loud line 7" in text
    assert "debug line" in text and "test_toplevel.py:" in text  # DEBUG adds file:line
    assert "late line" in text
    assert "loud line 7" in path.read_text()
    with pytest.raises(ValueError, match="set_log_level"):
        ty.set_log_level("LOUDEST")


# ---------------------------------------------------------------- memory getters
def test_memory_getters_follow_the_allocator():
    ty.coalesce_free_memory()
    ty.reset_max_memory_stats()
    base_alloc = ty.get_allocated_memory()
    assert ty.get_max_allocated_memory() == base_alloc
    assert ty.get_max_reserved_memory() == ty.get_reserved_memory()
    n = 1 << 20  # 4 MiB of float32
    t = ty.tensor(np.ones(n, np.float32))
    assert ty.get_allocated_memory() >= base_alloc + 4 * n
    assert ty.get_reserved_memory() >= ty.get_allocated_memory()
    peak = ty.get_max_allocated_memory()
    assert peak >= base_alloc + 4 * n
    del t
    assert ty.get_allocated_memory() < base_alloc + 4 * n
    assert ty.get_max_allocated_memory() == peak  # the peak stays
    reserved = ty.get_reserved_memory()  # the freed block is cached: still reserved
    assert reserved >= 4 * n and ty.get_max_reserved_memory() >= reserved
    ty.coalesce_free_memory()
    assert ty.get_reserved_memory() == ty.get_allocated_memory()
    assert ty.get_max_reserved_memory() >= reserved
    ty.reset_max_memory_stats()
    assert ty.get_max_allocated_memory() == ty.get_allocated_memory()
    assert ty.get_max_reserved_memory() == ty.get_reserved_memory()


def test_set_prealloc_config_validates_and_records():
    ty.set_prealloc_config(alignment=256, min_req=1 << 20, max_overhead=0, growth_factor=1.5)
    assert ty.device.get_prealloc_config("gpu") == dict(alignment=256, min_req=1 << 20,
                                                        max_overhead=0, growth_factor=1.5)
    for bad in (dict(alignment=0), dict(min_req=0), dict(max_overhead=-1),
                dict(growth_factor=0.5)):
        with pytest.raises(ValueError, match="set_prealloc_config"):
            ty.set_prealloc_config(**bad)


# ---------------------------------------------------------------- vendor getters
def test_vendor_getters_answer_for_a_cpu_build():
    assert ty.is_cuda_available() is False
    assert not ty.is_atlas_available() and not ty.is_cambricon_available()
    assert not ty.is_rocm_available()
    for f in (ty.get_cuda_version, ty.get_cudnn_version, ty.get_tensorrt_version,
              ty.get_cuda_driver_version, ty.get_cuda_compute_capability,
              ty.get_cuda_device_property):
        with pytest.raises(RuntimeError, match="no CUDA"):
            f()
    info = ty.check_misc()
    assert info["cuda"] is False and info["num_threads"] == ty.get_num_threads()


# ---------------------------------------------------------------- config and debug_param
def test_config_settings_validate_and_are_shared(restore_config):
    assert ty.config.async_level == 2
    ty.config.async_level = 0
    assert ty.config.async_level == 0 and ty.async_level == 0
    with pytest.raises(ValueError, match="async_level"):
        ty.config.async_level = 3
    with pytest.raises(TypeError, match="benchmark_kernel"):
        ty.config.benchmark_kernel = "yes"
    ty.benchmark_kernel = True  # the package forwards to config
    assert ty.config.benchmark_kernel is True
    ty.config.disable_memory_forwarding = True
    ty.config.benchmark_with_subprocess = 1
    assert ty.config.benchmark_with_subprocess is True
    assert ty.config.disable_memory_forwarding is True


def test_execution_strategy_is_a_view_of_config(restore_config):
    S = dp.Strategy
    dp.set_execution_strategy("HEURISTIC")
    assert dp.get_execution_strategy() == S.HEURISTIC
    assert ty.config.benchmark_kernel is False and ty.config.deterministic_kernel is False
    dp.set_execution_strategy("PROFILE_REPRODUCIBLE")
    assert ty.config.benchmark_kernel and ty.config.deterministic_kernel
    assert dp.get_execution_strategy() == S.PROFILE | S.REPRODUCIBLE
    dp.set_execution_strategy(S.HEURISTIC | S.REPRODUCIBLE)
    assert dp.get_execution_strategy() == S.HEURISTIC | S.REPRODUCIBLE
    ty.config.benchmark_kernel = True
    assert dp.get_execution_strategy() == S.PROFILE | S.REPRODUCIBLE
    dp.set_execution_strategy("REPRODUCIBLE")
    assert dp.get_execution_strategy() == S.HEURISTIC | S.REPRODUCIBLE
    assert dp.get_conv_execution_strategy() == dp.get_execution_strategy()
    for bad in ("FAST", "PROFILE_HEURISTIC", ""):
        with pytest.raises(ValueError, match="set_execution_strategy"):
            dp.set_execution_strategy(bad)
    with pytest.raises(TypeError):
        dp.set_execution_strategy(3.0)
    assert dp.builtin.Strategy is S
