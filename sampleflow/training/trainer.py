"""The optimisation loop shared by every learned method.

The caller supplies a *step function* ``step_fn(iteration) -> (loss, info)`` that builds a scalar
loss with a graph to the trained parameters (and a dict of floats to log, e.g. ``{"logZ": ...}``);
the :class:`Trainer` does the rest: backward, a finiteness check of the loss and of the gradients
(a non-finite step is skipped and counted), global gradient-norm clipping, the Adam step, the
learning-rate schedule, the EMA of the weights, the history, the progress bar, time/iteration
budgets, atomic checkpoints and resume (Ctrl-C included).
"""
from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..io import atomic_write
from ..nn.ema import EMA
from ..progress import progress
from .checkpoint import CHECKPOINT_FORMAT, check_plain, load_checkpoint
from .config import TrainConfig, lr_at
from .history import BASE_COLUMNS, TrainHistory

__all__ = ["Trainer", "TrainingDivergedError"]

_CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_: scale = clip / (norm + eps), capped at 1
_POSTFIX_EVERY = 0.5  # seconds between progress-bar postfix refreshes


class TrainingDivergedError(ValueError):
    """Raised after ``TrainConfig.max_nonfinite`` non-finite losses or gradients in a row.

    Attributes: ``consecutive`` (the count), ``iteration`` (0-based index of the last failing
    iteration), ``last_finite_loss`` and ``last_finite_iteration`` (None when no step was finite)."""

    def __init__(self, message: str, *, consecutive: int, iteration: int,
                 last_finite_loss: float | None, last_finite_iteration: int | None):
        super().__init__(message)
        self.consecutive = consecutive
        self.iteration = iteration
        self.last_finite_loss = last_finite_loss
        self.last_finite_iteration = last_finite_iteration


class _Bundle(nn.Module):
    """All trained modules and loose parameters under their names (one state dict, one EMA)."""

    def __init__(self, named: Mapping[str, nn.Module | nn.Parameter]):
        super().__init__()
        for name, obj in named.items():
            try:
                if isinstance(obj, nn.Module):
                    self.add_module(name, obj)
                else:
                    self.register_parameter(name, obj)
            except KeyError:
                raise ValueError(f"params_or_modules: the name {name!r} is reserved (an nn.Module attribute); "
                                 "choose another key") from None


def _named_entries(obj) -> dict[str, nn.Module | nn.Parameter]:
    """``params_or_modules`` -> {name: Module or Parameter}."""
    def check(name, x):
        if isinstance(x, (nn.Module, nn.Parameter)):
            return x
        if isinstance(x, torch.Tensor):
            raise TypeError(f"params_or_modules[{name!r}]: a plain tensor cannot be trained and checkpointed "
                            "by name; wrap it in torch.nn.Parameter")
        raise TypeError(f"params_or_modules[{name!r}]: expected an nn.Module or nn.Parameter, got {type(x).__name__}")

    if isinstance(obj, (nn.Module, nn.Parameter)):
        named = {"model" if isinstance(obj, nn.Module) else "param": obj}
    elif isinstance(obj, Mapping):
        named = {str(k): check(k, v) for k, v in obj.items()}
    elif isinstance(obj, Iterable) and not isinstance(obj, torch.Tensor):
        named = {str(i): check(i, v) for i, v in enumerate(obj)}
    else:
        raise TypeError("params_or_modules must be an nn.Module, an nn.Parameter, or a list/dict of them; "
                        f"got {type(obj).__name__}")
    if not named:
        raise ValueError("params_or_modules is empty: nothing to train")
    for k in named:
        if not k or "." in k:
            raise ValueError(f"params_or_modules: name {k!r} must be non-empty and contain no '.'")
    return named


def _global_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """2-norm of all gradients together (a 0-d tensor on the first gradient's device; no sync)."""
    try:
        norms = torch._foreach_norm(grads)
    except (AttributeError, RuntimeError, TypeError):
        norms = [torch.linalg.vector_norm(g) for g in grads]
    try:  # the usual case: one device, one dtype
        return torch.linalg.vector_norm(torch.stack(norms))
    except RuntimeError:
        dev = grads[0].device
        return torch.linalg.vector_norm(torch.stack([n.to(device=dev, dtype=torch.float32) for n in norms]))


class Trainer:
    """Adam (or a given optimiser) around a loss closure, with the usual safeguards.

    Parameters
    ----------
    params_or_modules: an ``nn.Module``, an ``nn.Parameter`` (e.g. a learned log Z), or a list or
        dict of them; names (dict keys, list indices, ``"model"`` / ``"param"`` for a single one)
        key the checkpoint and ``lr_scales``.
    config: :class:`TrainConfig` (default ``TrainConfig()``).
    checkpoint_path: file to write checkpoints to (None = no checkpoints).
    extra_state: plain data saved in every checkpoint (e.g. ``dataclasses.asdict(sampler_config)``),
        or a zero-argument callable returning it at save time.
    generator: a ``torch.Generator`` (or a list of them) the step function draws from; its state
        is checkpointed so that a resumed run continues the same random stream.
    optimizer: ``callable(param_groups) -> torch.optim.Optimizer`` to replace Adam; the groups are
        dicts with ``"params"``, ``"lr"`` and ``"name"``.  The trainer sets each group's lr every
        iteration (schedule × the group's lr scale).
    lr_scales: ``{name: factor}``: that entry's lr is ``factor`` times the schedule (e.g. a larger
        lr for a learned log Z).
    desc: progress-bar label.

    Checkpoints hold the weights, optimiser, schedule, EMA, history, generator states, counters and
    ``extra_state``; they are written atomically and loaded with ``weights_only=True``.  Ctrl-C:
    during a run in the main thread, an interrupt that arrives while the parameters are being
    updated is held until the update is complete, so the interrupt checkpoint is always consistent.
    Global RNG state (``torch.manual_seed``) is not saved: draw from ``generator``.

    Attributes: ``iteration`` (iterations completed), ``history`` (:class:`TrainHistory`),
    ``optimizer``, ``ema`` (``sampleflow.nn.ema.EMA`` over all entries, or None), ``elapsed``
    (seconds of training), ``stop_reason`` (``"iterations"``, ``"time_budget"`` or ``"callback"``
    after a run), ``modules`` (the entries by name).
    """

    def __init__(self, params_or_modules, config: TrainConfig | None = None, checkpoint_path: str | Path | None = None,
                 extra_state: dict | Callable[[], dict] | None = None, *,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None,
                 optimizer: Callable[[list[dict]], torch.optim.Optimizer] | None = None,
                 lr_scales: Mapping[str, float] | None = None, desc: str = "train"):
        self.config = TrainConfig() if config is None else config
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        self.modules = _named_entries(params_or_modules)
        self._bundle = _Bundle(self.modules)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        if extra_state is not None and not callable(extra_state):
            check_plain(extra_state, "extra_state")
        self.extra_state = extra_state
        if generator is None:
            self.generators: list[torch.Generator] = []
        elif isinstance(generator, torch.Generator):
            self.generators = [generator]
        else:
            self.generators = list(generator)
            if not all(isinstance(g, torch.Generator) for g in self.generators):
                raise TypeError("generator must be a torch.Generator or a list of them")
        self.desc = desc

        # parameter groups: one per named entry, trainable parameters only, each parameter once
        lr_scales = dict(lr_scales or {})
        unknown = set(lr_scales) - set(self.modules)
        if unknown:
            raise ValueError(f"lr_scales: unknown names {sorted(unknown)}; the entries are {list(self.modules)}")
        seen: set[int] = set()
        groups = []
        for name, obj in self.modules.items():
            ps = [obj] if isinstance(obj, nn.Parameter) else list(obj.parameters())
            ps = [p for p in ps if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in ps)
            if ps:
                scale = float(lr_scales.get(name, 1.0))
                groups.append({"params": ps, "lr": self.config.lr * scale, "name": name, "lr_scale": scale})
        if not groups:
            raise ValueError("params_or_modules has no parameter with requires_grad=True: nothing to train")
        self._params = [p for g in groups for p in g["params"]]
        if optimizer is None:
            cfg = self.config
            cls = torch.optim.AdamW if cfg.weight_decay > 0 else torch.optim.Adam
            kw = {"weight_decay": cfg.weight_decay} if cfg.weight_decay > 0 else {}
            self.optimizer = cls(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **kw)
        else:
            self.optimizer = optimizer(groups)
            if not isinstance(self.optimizer, torch.optim.Optimizer):
                raise TypeError("optimizer(param_groups) must return a torch.optim.Optimizer")
            for g in self.optimizer.param_groups:
                g.setdefault("lr_scale", 1.0)
        self.ema = None if self.config.ema_decay is None else EMA(self._bundle, self.config.ema_decay, warmup=self.config.ema_warmup)

        self.iteration = 0
        self.elapsed = 0.0
        self.history = TrainHistory()
        self.stop_reason: str | None = None
        self._window = self._empty_window()
        self._nonfinite = 0
        self._last_finite: tuple[float, int] | None = None  # (loss, 0-based iteration)
        self._in_update = False
        self._pending_sigint = False
        self._gen_snapshot: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ schedule
    def lr_at(self, index: int) -> float:
        """Base learning rate of the iteration with 0-based ``index`` (before ``lr_scales``)."""
        return lr_at(self.config, index)

    def _set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)

    # ------------------------------------------------------------------ EMA
    def ema_weights(self):
        """Context manager: inside, the trained modules hold the EMA weights (no-op without EMA)."""
        return self.ema.swapped() if self.ema is not None else nullcontext(self._bundle)

    # ------------------------------------------------------------------ state / checkpoints
    def state_dict(self) -> dict:
        """Everything a checkpoint holds (see :func:`load_checkpoint`)."""
        gens = self._gen_snapshot if self._gen_snapshot is not None else [g.get_state() for g in self.generators]
        extra = self.extra_state() if callable(self.extra_state) else self.extra_state
        check_plain(extra, "extra_state")
        cfg = self.config
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "config": dataclasses.asdict(cfg),
            "modules": self._bundle.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "scheduler": {"kind": "geometric", "lr": cfg.lr, "lr_final": cfg.lr_final, "iterations": cfg.iterations,
                          "next_lr": self.lr_at(self.iteration)},
            "history": self.history.to_dict(),
            "window": {"n": self._window["n"], "skipped": self._window["skipped"],
                       "sums": dict(self._window["sums"]), "counts": dict(self._window["counts"])},
            "generators": [s.clone().cpu() for s in gens],
            "nonfinite": {"consecutive": self._nonfinite,
                          "last_finite_loss": None if self._last_finite is None else self._last_finite[0],
                          "last_finite_iteration": None if self._last_finite is None else self._last_finite[1]},
            "extra_state": extra,
        }

    def load_state_dict(self, state: dict) -> Any:
        """Restore from :meth:`state_dict` / :func:`load_checkpoint`; returns the saved ``extra_state``."""
        try:
            self._bundle.load_state_dict(state["modules"])
        except RuntimeError as e:
            raise ValueError(f"the checkpoint's weights do not match the trainer's modules: {e}") from e
        scales = [g.get("lr_scale", 1.0) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for g, sc in zip(self.optimizer.param_groups, scales):  # this trainer's lr_scales win
            g["lr_scale"] = sc
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:
                warnings.warn("checkpoint has no EMA state: the EMA restarts from the loaded weights", stacklevel=2)
                self.ema = EMA(self._bundle, self.config.ema_decay, warmup=self.config.ema_warmup)
        gens = state.get("generators", [])
        if len(gens) != len(self.generators):
            raise ValueError(f"the checkpoint holds {len(gens)} generator state(s), the trainer was given "
                             f"{len(self.generators)} generator(s)")
        for g, s in zip(self.generators, gens):
            g.set_state(s)
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self.history = TrainHistory.from_dict(state["history"])
        w = state.get("window") or {}
        self._window = self._empty_window()
        self._window.update(n=int(w.get("n", 0)), skipped=int(w.get("skipped", 0)),
                            sums=dict(w.get("sums", {})), counts=dict(w.get("counts", {})))
        nf = state.get("nonfinite") or {}
        self._nonfinite = int(nf.get("consecutive", 0))
        lf, li = nf.get("last_finite_loss"), nf.get("last_finite_iteration")
        self._last_finite = None if lf is None else (float(lf), int(li))
        self._gen_snapshot = None
        return state.get("extra_state")

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the state atomically (temp file + rename) to ``path`` (default: ``checkpoint_path``)."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("save_checkpoint: no path given and the trainer has no checkpoint_path")
        state = self.state_dict()
        return atomic_write(path, lambda f: torch.save(state, f), binary=True)

    def resume(self, path: str | Path | None = None) -> Any:
        """Load the checkpoint at ``path`` (default: ``checkpoint_path``); the next :meth:`run`
        continues from its iteration to ``config.iterations``.  Returns the saved ``extra_state``."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("resume: no path given and the trainer has no checkpoint_path")
        return self.load_state_dict(load_checkpoint(path))

    # ------------------------------------------------------------------ the loop
    @staticmethod
    def _empty_window() -> dict:
        return {"n": 0, "skipped": 0, "sums": {}, "counts": {}}

    def _flush(self, index: int) -> dict[str, float]:
        """Append the row of the window ending at 0-based iteration ``index``."""
        w = self._window
        row = {"iteration": index + 1, "time": self.elapsed, "lr": self.lr_at(index), "skipped": w["skipped"]}
        for k in ("loss", "grad_norm", *[k for k in w["sums"] if k not in ("loss", "grad_norm")]):
            c = w["counts"].get(k, 0)
            row[k] = w["sums"][k] / c if c else math.nan
        self.history.append(row)
        self._window = self._empty_window()
        return row

    @staticmethod
    def _unpack(out, index: int) -> tuple[torch.Tensor, dict]:
        if isinstance(out, torch.Tensor):
            loss, info = out, {}
        elif isinstance(out, (tuple, list)) and len(out) == 2:
            loss, info = out
            info = {} if info is None else info
        else:
            raise TypeError(f"step_fn({index}) must return a loss tensor or (loss, info dict), got {type(out).__name__}")
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"step_fn({index}) returned a loss of shape {shape}; it must be a scalar tensor "
                             "(reduce it, e.g. .mean())")
        if not loss.requires_grad:
            raise ValueError(f"step_fn({index}) returned a loss that does not require grad: it has no graph to the "
                             "trained parameters (was it computed under torch.no_grad() or detached?)")
        if not isinstance(info, Mapping):
            raise TypeError(f"step_fn({index}): info must be a dict of floats, got {type(info).__name__}")
        for k, v in info.items():
            if isinstance(v, torch.Tensor) and v.numel() != 1:
                raise ValueError(f"step_fn({index}): info[{k!r}] has shape {tuple(v.shape)}; info values must be "
                                 "numbers or one-element tensors")
        clash = [k for k in info if k in BASE_COLUMNS]
        if clash:
            raise ValueError(f"step_fn({index}): info keys {clash} clash with the history's own columns {BASE_COLUMNS}")
        return loss.reshape(()), dict(info)

    @contextmanager
    def _sigint_deferred(self):
        """While a run is in progress, a Ctrl-C arriving during the parameter update is held until
        the update is complete, so that the interrupt checkpoint is always consistent."""
        install = (threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if not install:
            yield
            return

        def handler(signum, frame):
            if self._in_update:
                self._pending_sigint = True
            else:
                raise KeyboardInterrupt

        old = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)

    def _diverged(self, index: int, loss_v: float, norm_v: float) -> TrainingDivergedError:
        cfg = self.config
        k = self._nonfinite
        if self._last_finite is None:
            last = "no step has had a finite loss and gradient yet"
        else:
            last = f"the last finite loss was {self._last_finite[0]:.6g} (iteration {self._last_finite[1]})"
        clip = "off" if cfg.grad_clip is None else f"{cfg.grad_clip:g}"
        msg = (f"training diverged: {k} non-finite losses or gradients in a row (iterations {index - k + 1} to "
               f"{index}; the last had loss={loss_v}, gradient norm={norm_v}); {last}. Those steps were skipped, "
               f"so the weights are the last finite ones. Try a lower learning rate (lr={cfg.lr:g}, now "
               f"{self.lr_at(index):g}), stronger gradient clipping (grad_clip={clip}), or a more stable loss "
               f"(float64, a smaller time step); max_nonfinite={cfg.max_nonfinite} sets how many in a row are tolerated.")
        last_loss, last_it = self._last_finite if self._last_finite is not None else (None, None)
        return TrainingDivergedError(msg, consecutive=k, iteration=index, last_finite_loss=last_loss,
                                     last_finite_iteration=last_it)

    def run(self, step_fn: Callable[[int], Any], *, callback: Callable[["Trainer", dict], Any] | None = None,
            resume: bool = False) -> TrainHistory:
        """Train from ``self.iteration`` to ``config.iterations`` (or the time budget); returns the history.

        ``step_fn(i)`` gets the 0-based iteration index and returns ``loss`` or ``(loss, info)``:
        a scalar tensor with a graph to the parameters and a dict of numbers (floats or 0-d tensors)
        to log and show.  ``callback(trainer, stats)`` is called after every iteration with
        ``stats = {"iteration": completed count, "loss", "grad_norm", "lr", "skipped": 0/1, **info}``;
        returning True stops the run (a checkpoint is written as at the end).  ``resume=True`` first
        loads ``checkpoint_path`` (which must exist).  Ctrl-C (KeyboardInterrupt, also one raised by
        ``step_fn``) writes a checkpoint of the state after the last completed iteration, then
        re-raises; the generators are rewound to that point too.
        """
        if resume:
            self.resume()
        cfg = self.config
        self.stop_reason = None
        t0 = time.perf_counter()
        base_elapsed = self.elapsed
        bar = progress(total=cfg.iterations, desc=self.desc, enabled=cfg.progress, initial=self.iteration)
        show = not bar.disable
        last_postfix = -math.inf
        every = cfg.checkpoint_every or 0
        self._pending_sigint = False
        if cfg.time_budget is not None and self.elapsed >= cfg.time_budget:
            self.stop_reason = "time_budget"  # a resumed run whose budget is already spent
            bar.close()
            return self.history
        try:
            with self._sigint_deferred():
                while self.iteration < cfg.iterations:
                    i = self.iteration
                    if self.generators:
                        self._gen_snapshot = [g.get_state() for g in self.generators]
                    lr = self.lr_at(i)
                    self._set_lr(lr)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss, info = self._unpack(step_fn(i), i)
                    loss.backward()
                    grads = [p.grad for p in self._params if p.grad is not None]
                    if not grads:
                        raise ValueError(f"step_fn({i}): the loss does not depend on any trained parameter "
                                         "(no gradient reached them)")
                    norm = _global_grad_norm(grads)
                    tkeys = [k for k, v in info.items() if isinstance(v, torch.Tensor)]
                    dt = torch.float32 if norm.device.type == "mps" else torch.float64  # MPS has no float64
                    vals = torch.stack([loss.detach().to(norm.device, dt), norm.to(dt),
                                        *[info[k].detach().reshape(()).to(norm.device, dt) for k in tkeys]])
                    vals = vals.tolist()  # the one host sync of the iteration
                    loss_v, norm_v = vals[0], vals[1]
                    for k, v in zip(tkeys, vals[2:]):
                        info[k] = v
                    try:
                        info = {k: float(v) for k, v in info.items()}
                    except (TypeError, ValueError):
                        bad = {k: type(v).__name__ for k, v in info.items() if not isinstance(v, (int, float))}
                        raise TypeError(f"step_fn({i}): info values must be numbers, got {bad}") from None
                    finite = math.isfinite(loss_v) and math.isfinite(norm_v)

                    self._in_update = True  # from here to the end of the iteration: no interrupt
                    w = self._window
                    if finite:
                        if cfg.grad_clip is not None:
                            scale = cfg.grad_clip / (norm_v + _CLIP_EPS)
                            if scale < 1.0:
                                torch._foreach_mul_(grads, scale)
                        self.optimizer.step()
                        if self.ema is not None:
                            self.ema.update()
                        self._nonfinite = 0
                        self._last_finite = (loss_v, i)
                        w["n"] += 1
                        for k, v in (("loss", loss_v), ("grad_norm", norm_v), *info.items()):
                            w["sums"][k] = w["sums"].get(k, 0.0) + v
                            w["counts"][k] = w["counts"].get(k, 0) + 1
                    else:
                        self.optimizer.zero_grad(set_to_none=True)
                        self._nonfinite += 1
                        w["skipped"] += 1
                        if self._nonfinite >= cfg.max_nonfinite:
                            self._gen_snapshot = None
                            raise self._diverged(i, loss_v, norm_v)
                    self.iteration = i + 1
                    self._gen_snapshot = None
                    self.elapsed = base_elapsed + (time.perf_counter() - t0)

                    stop = None
                    if callback is not None:
                        stats = {"iteration": self.iteration, "loss": loss_v, "grad_norm": norm_v, "lr": lr,
                                 "skipped": 0 if finite else 1, **info}
                        self._in_update = False  # the iteration is complete: Ctrl-C in the callback checkpoints it
                        if callback(self, stats) is True:
                            stop = "callback"
                        self._in_update = True
                    if stop is None and cfg.time_budget is not None and self.elapsed >= cfg.time_budget:
                        stop = "time_budget"
                    if stop is None and self.iteration >= cfg.iterations:
                        stop = "iterations"
                    if stop is not None or self.iteration % cfg.log_every == 0:
                        self._flush(i)
                    if show:
                        bar.update(self.iteration - bar.n)
                        now = time.perf_counter()
                        if finite and now - last_postfix >= _POSTFIX_EVERY:
                            bar.set_postfix({"loss": f"{loss_v:.4g}", **{k: f"{v:.4g}" for k, v in info.items()}},
                                            refresh=False)
                            last_postfix = now
                    if stop is not None:
                        self.stop_reason = stop
                        if self.checkpoint_path is not None:
                            self.save_checkpoint()
                        self._in_update = False
                        if self._pending_sigint:  # Ctrl-C during the last iteration still interrupts
                            raise KeyboardInterrupt
                        break
                    if every and self.checkpoint_path is not None and self.iteration % every == 0:
                        self.save_checkpoint()
                    self._in_update = False
                    if self._pending_sigint:
                        self._pending_sigint = False
                        raise KeyboardInterrupt
                else:
                    self.stop_reason = "iterations"  # nothing left to do (already at the budget)
        except KeyboardInterrupt:
            self.elapsed = base_elapsed + (time.perf_counter() - t0)
            if self._in_update:
                # only possible when our SIGINT handler could not be installed (not the main thread,
                # or a custom handler): the update may be half done, keep the last checkpoint.
                warnings.warn("interrupted during a parameter update: no checkpoint written, the last periodic "
                              "one is kept", stacklevel=2)
            else:
                if self._gen_snapshot is not None:  # rewind the stream to the start of the lost iteration
                    for g, s in zip(self.generators, self._gen_snapshot):
                        g.set_state(s)
                self.optimizer.zero_grad(set_to_none=True)
                if self.checkpoint_path is not None:
                    self.save_checkpoint()
            raise
        finally:
            self._in_update = False
            self._gen_snapshot = None
            bar.close()
        return self.history
