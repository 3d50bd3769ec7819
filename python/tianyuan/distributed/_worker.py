"""One rank of a ``dist.launcher`` job: ``python -m tianyuan.distributed._worker JOBDIR``.

Reads JOBDIR/job.pkl (written by the launcher of this user, in a private folder), finds the
function, joins the process group, runs it and writes result_<rank>.pkl or error_<rank>.txt.
"""
import importlib
import os
import pickle
import runpy
import sys
import traceback


def _rank_from_env():
    for key in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    raise RuntimeError("tianyuan.distributed._worker must be started by mpirun")


def _find(job):
    if job["module"] == "__main__":
        # the user's script as __mp_main__ (its main block does not run), standing in for
        # __main__ too, so pickled arguments and results of its classes resolve
        main = type(sys)("__mp_main__")
        main.__file__ = job["file"]
        sys.modules["__mp_main__"] = main
        main.__dict__.update(runpy.run_path(job["file"], run_name="__mp_main__"))
        sys.modules["__main__"] = main
        obj = main
        for p in job["qualname"].split("."):
            obj = getattr(obj, p)
    else:
        obj = importlib.import_module(job["module"])
        for p in job["qualname"].split("."):
            obj = getattr(obj, p)
    return getattr(obj, "_func", obj)  # the launcher wrapper holds the plain function


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(jobdir):
    os.environ["TY_DIST_WORKER"] = "1"  # the worker reports failures and finalizes itself
    from tianyuan.distributed.launcher import set_parent_death_signal
    set_parent_death_signal()
    rank = _rank_from_env()
    _write_atomic(os.path.join(jobdir, f"pid_{rank}"), str(os.getpid()).encode())
    try:
        with open(os.path.join(jobdir, "job.pkl"), "rb") as f:
            job = pickle.load(f)
        sys.path[:] = job["sys_path"]
        os.chdir(job["cwd"])
        func = _find(job)
        from tianyuan.distributed.group import init_process_group, _finish
        init = job["init"]
        init_process_group(init["master_ip"], init["port"], init["world_size"], rank, rank,
                           init["backend"], init["device_type"], timeout=init["timeout"],
                           seed=init["seed"])
        args, kwargs = pickle.loads(job["call"])
        result = func(*args, **kwargs)
        _write_atomic(os.path.join(jobdir, f"result_{rank}.pkl"), pickle.dumps(result))
        _finish()
    except BaseException as e:
        _write_atomic(os.path.join(jobdir, f"error_{rank}.txt"),
                      traceback.format_exc().encode())
        from tianyuan.distributed.group import _abort_job
        _abort_job(f"rank {rank} failed: {type(e).__name__}: {e}")
        sys.stderr.flush()
        os._exit(1)  # no atexit MPI_Finalize: the other ranks may sit in a collective
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
