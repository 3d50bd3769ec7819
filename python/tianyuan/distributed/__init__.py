"""tianyuan.distributed: data-parallel training across processes and machines (MegEngine's
``megengine.distributed``), on MPI (CPU) and NCCL (GPU).

Start a job with ``mpirun -np N python train.py`` (any MPI launcher, so Slurm works) or, on one
machine, with the :func:`launcher` decorator. See docs/distributed.md.

>>> import tianyuan.distributed as dist
>>> dist.get_rank(), dist.get_world_size(), dist.is_distributed()
(0, 1, False)
"""
from .group import (init_process_group, is_distributed, get_rank, get_world_size,  # noqa: F401
                    new_group, Group, WORLD, group_barrier, get_backend, get_client,
                    get_mm_server_addr, get_py_server_addr, get_local_device_id,
                    override_backend, backend, group_start, group_end, rank_seed,
                    synchronized, get_device_count, DistError, set_deterministic)
from .server import Server, Client, StoreError  # noqa: F401
from .launcher import launcher, LaunchError  # noqa: F401
from .helper import (bcast_list_, make_allreduce_cb, AllreduceCallback,  # noqa: F401
                     param_pack_split, param_pack_concat, pack_allreduce_split)
from . import functional  # noqa: F401

__all__ = ["init_process_group", "is_distributed", "get_rank", "get_world_size", "new_group",
           "Group", "WORLD", "group_barrier", "get_backend", "get_client",
           "get_mm_server_addr", "get_py_server_addr", "get_local_device_id",
           "override_backend", "backend", "group_start", "group_end", "rank_seed",
           "synchronized", "Server", "Client", "launcher", "bcast_list_",
           "make_allreduce_cb", "AllreduceCallback", "functional", "DistError", "LaunchError",
           "StoreError", "set_deterministic"]
