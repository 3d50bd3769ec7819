"""The rank function of test_dist_overlap (module level, so dist.launcher's ranks import it):
the reference CNN with an identity probe after conv1, whose backward notes how many
collectives this rank had started by then (conv1's gradients are not computed yet, so every
one started is a bucket reduction overlapping backward)."""
import numpy as np

import tianyuan as ty
import tianyuan.distributed as dist
import tianyuan.functional as F
import tianyuan.optimizer as optim
from tianyuan.autodiff import Function, GradManager
from tianyuan.data.sampler import RandomSampler

from _dp_common import GLOBAL_BATCH, SEED, Net, dataset

_events = []   # per step: ("step", started) then ("probe", started)


def _started():
    from tianyuan.distributed import _comm
    return _comm.stats()["started"]


class _Probe(Function):
    def forward(self, x):
        return x * 1.0    # exact: the same bits as without the probe

    def backward(self, dy):
        _events.append(("probe", _started()))
        return dy


class ProbedNet(Net):
    def forward(self, x):
        x = self.pool(self.relu(_Probe()(self.conv1(x))))
        x = self.pool(self.relu(self.conv2(x)))
        x = F.flatten(x, 1)
        x = self.relu(self.fc1(x))
        return self.fc2(x)


def overlap_worker(bucket_size):
    """Eager deterministic training as test_dist_train's dp_worker; returns the final state
    and the probe's events."""
    dist.set_deterministic(True)
    ty.random.seed(SEED + 100 * dist.get_rank())
    model = ProbedNet()
    dist.bcast_list_(list(model.parameters()))
    cb = dist.make_allreduce_cb("mean", bucket_size=bucket_size)
    gm = GradManager().attach(model.parameters(), callbacks=cb)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ds = dataset()
    sampler = RandomSampler(ds, batch_size=GLOBAL_BATCH // dist.get_world_size(), seed=SEED + 1)
    for idx in sampler:
        x, y = ty.tensor(ds.arrays[0][idx]), ty.tensor(ds.arrays[1][idx])
        _events.append(("step", _started()))
        with gm:
            gm.backward(F.nn.cross_entropy(model(x), y))
        opt.step().clear_grad()
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    return state, list(_events), cb.buckets_started


def error_then_step_worker(bucket_size):
    """A backward whose last gradient callback raises after buckets started, then a normal
    step: returns (error text, in-flight works after the error, the second step's grads)."""
    from tianyuan.distributed import _comm
    import tianyuan.module as M
    ty.random.seed(SEED)
    model = M.Sequential(M.Linear(8, 16), M.ReLU(), M.Linear(16, 16), M.ReLU(), M.Linear(16, 4))
    first = model[0].weight
    fail = [True]

    def raiser(p, g):
        if fail[0] and p is first:
            raise ValueError("refused on purpose")
        return g

    gm = GradManager().attach(model.parameters(),
                              callbacks=[dist.make_allreduce_cb("sum", bucket_size=bucket_size),
                                         raiser])
    x = ty.tensor(np.full((2, 8), dist.get_rank() + 1.0, dtype=np.float32))
    err = None
    try:
        with gm:
            gm.backward(model(x).sum())
    except ValueError as e:
        err = str(e)
    in_flight = _comm.stats()["in_flight"]
    fail[0] = False
    with gm:
        gm.backward(model(x).sum())
    return err, in_flight, {n: np.asarray(p.grad) for n, p in model.named_parameters()}
