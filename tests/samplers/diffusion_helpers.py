"""Helpers for tests/samplers/test_diffusion.py: small configs, eq. (1) of sampleflow.sde.paths evaluated
along a *given* trajectory (an independent re-implementation of the accumulation in
sampleflow.sde.simulate), parameter perturbation and a saved-tensor byte counter."""
from __future__ import annotations

import torch

from sampleflow.samplers.diffusion import CMCD, DDS, DIS, PIS, Bridge
from sampleflow.sde.paths import transition_log_ratio

METHODS = {"pis": PIS, "dis": DIS, "dds": DDS, "cmcd": CMCD, "bridge": Bridge}

#: a small network and grid that train in a few seconds on one CPU thread
SMALL = dict(n_steps=10, width=32, depth=3, batch_size=256, lr=1e-2, lr_final=1e-3, log_every=5)


def make(name: str, target, preset: str = "test", init_seed: int | None = 0, **overrides):
    """A sampler ``name`` with ``cls.make_config(preset, **overrides)``. The networks' initial weights
    come from torch's *global* generator (the sampler takes no seed for them), so ``init_seed`` seeds
    it inside a ``fork_rng`` block: the tests do not depend on which tests ran before
    (``init_seed=None``: whatever the global generator holds)."""
    cls = METHODS[name]
    config = cls.make_config(preset, **overrides)
    if init_seed is None:
        return cls(target, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return cls(target, config)


def log_w_along(sampler, target, traj: torch.Tensor) -> torch.Tensor:
    """log w of eq. (1) for the trajectory ``traj`` (K+1, n, d) held fixed, as a function of the
    sampler's parameters (controls, CMCD's step):

        log w = log π̃(X_K) − log p_0(X_0) + Σ_k [log B_k(X_k | X_{k+1}) − log F_k(X_{k+1} | X_k)].
    """
    sampler.before_simulation()
    path = sampler.path
    ctl = sampler.modules["control"]
    bctl = sampler.modules["backward"] if "backward" in sampler.modules else None
    ts = path.times(traj[0])

    def prior_score(x):
        return None if path.prior_is_point else path.prior_score(x)

    def ev(net, x, k):
        return net(x, ts[k], score=target.score(x), prior_score=prior_score(x))

    lw = -path.prior_log_prob(traj[0])
    for k in range(path.n_steps):
        x, xn = traj[k], traj[k + 1]
        fwd = path.forward(k, x, target.score(x), ev(ctl, x, k))
        u_n = ev(ctl, xn, k + 1) if path.backward_uses_forward_control else None
        v_n = ev(bctl, xn, k + 1) if path.has_backward_control else None
        bwd = path.backward(k, xn, target.score(xn), u_n, v_n)
        lw = lw + transition_log_ratio(x, xn, fwd, bwd)
    return lw + target.log_prob(traj[-1])


def perturb_parameters(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Add seeded N(0, scale²) noise to every trainable parameter (so that a zero-initialised output
    layer does not make the other layers' gradients vanish)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


class SavedBytes:
    """Context manager: bytes of the tensors autograd saves for backward. ``bytes`` counts each
    distinct storage once (a tensor saved by several nodes, e.g. the stacked trajectory saved by every
    checkpointed chunk, is one allocation); ``raw_bytes`` and ``count`` count every save."""

    def __enter__(self):
        self.raw_bytes = 0
        self.count = 0
        self._storages = {}

        def pack(x):
            nbytes = x.numel() * x.element_size()
            self.raw_bytes += nbytes
            self.count += 1
            st = x.untyped_storage()
            key = (st.data_ptr(), x.device.type)
            self._storages[key] = max(self._storages.get(key, 0), st.nbytes())
            return x

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())
