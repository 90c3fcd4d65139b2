"""Figures of the benchmark report (matplotlib, Agg backend: never opens a window).

Each function draws one figure from plain NumPy data and writes it atomically to ``path`` (PNG unless
the suffix says otherwise); none of them reads the results store.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_write
from ..plots import _set_box

__all__ = ["samples_vs_reference", "marginal_histograms", "training_curves", "log_z_error_vs_time"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | Path, *, top: float = 0.86) -> Path:
    """Fixed margins (cheaper than tight_layout, which measures every tick label), write atomically in the
    format of the suffix (PNG by default), close; return the path."""
    import matplotlib.pyplot as plt
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.95 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=min(top, 1 - 0.45 / height), wspace=0.35, hspace=0.45)
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"), binary=True)
    plt.close(fig)
    return path


def _grid(n_panels: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, columns) of a panel grid holding ``n_panels`` panels."""
    cols = max(1, min(n_panels, max_cols))
    return int(np.ceil(n_panels / cols)), cols


def samples_vs_reference(samples: dict[str, np.ndarray], path: str | Path, *, reference: np.ndarray | None = None,
                         box=None, title: str = "", max_points: int = 2000) -> Path:
    """One panel per sampler: its samples (first two coordinates) over the reference points in grey.
    1-D samples are drawn as histograms. ``samples`` maps a sampler label to an (n, d) array."""
    plt = _pyplot()
    rows, cols = _grid(len(samples))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    ref = None if reference is None else np.asarray(reference)[:max_points]
    for ax, (label, x) in zip(axes.flat, samples.items()):
        x = np.asarray(x)[:max_points]
        if x.shape[1] == 1:
            if ref is not None:
                ax.hist(ref[:, 0], bins=60, density=True, color="0.75", label="reference")
            ax.hist(x[:, 0], bins=60, density=True, histtype="step", color="C0", label=label)
        else:
            if ref is not None:
                ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.7", alpha=0.5, label="reference", rasterized=True)
            ax.scatter(x[:, 0], x[:, 1], s=2, c="C0", alpha=0.6, label=label, rasterized=True)
            ax.set_xlabel("x[0]")
            ax.set_ylabel("x[1]")
            _set_box(ax, box, 0, 1)
        ax.set_title(label, fontsize=9)
        ax.legend(loc="upper right", fontsize=6, markerscale=3)
    for ax in list(axes.flat)[len(samples):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _weights(log_weights: np.ndarray | None) -> np.ndarray | None:
    """Self-normalised importance weights from log weights (None stays None)."""
    if log_weights is None:
        return None
    lw = np.asarray(log_weights, dtype=float)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    w = np.exp(lw - lw.max())
    return w / w.sum()


def marginal_histograms(samples: dict[str, np.ndarray], path: str | Path, *, reference: np.ndarray | None = None,
                        log_weights: dict[str, np.ndarray | None] | None = None, n_coords: int = 3,
                        title: str = "") -> Path:
    """One panel per coordinate (the first ``n_coords``): the reference marginal filled in grey and each
    sampler's marginal as a step histogram, importance-weighted where ``log_weights`` gives weights."""
    plt = _pyplot()
    dim = min(np.asarray(x).shape[1] for x in samples.values())
    n = max(1, min(n_coords, dim))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.0), dpi=100, squeeze=False)
    log_weights = log_weights or {}
    for k, ax in enumerate(axes[0]):
        pooled = [np.asarray(x)[:, k] for x in samples.values()]
        if reference is not None:
            pooled.append(np.asarray(reference)[:, k])
        lo, hi = np.percentile(np.concatenate(pooled), [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 50)
        if reference is not None:
            ax.hist(np.asarray(reference)[:, k], bins=bins, density=True, color="0.8", label="reference")
        for i, (label, x) in enumerate(samples.items()):
            ax.hist(np.asarray(x)[:, k], bins=bins, density=True, histtype="step", lw=1.2, color=f"C{i % 10}",
                    weights=_weights(log_weights.get(label)), label=label)
        ax.set_xlabel(f"x[{k}]")
        ax.set_yticks([])
    axes[0][0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def training_curves(histories: dict[str, list[dict]], path: str | Path, *, title: str = "") -> Path:
    """Loss against iteration: one colour per learned sampler, one line per seed. ``histories`` maps a
    sampler label to a list of column dicts (``{"iteration": [...], "loss": [...], ...}``). The y axis is
    logarithmic when every loss is positive, symmetric-log otherwise (KL-type losses can be negative)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=100)
    all_losses = []
    for i, (label, runs) in enumerate(histories.items()):
        for j, h in enumerate(runs):
            it = np.asarray(h["iteration"], dtype=float)
            loss = np.asarray(h["loss"], dtype=float)
            all_losses.append(loss[np.isfinite(loss)])
            ax.plot(it, loss, color=f"C{i % 10}", lw=1, alpha=0.85, label=label if j == 0 else None)
    finite = np.concatenate(all_losses) if all_losses else np.array([])
    if finite.size:
        ax.set_yscale("log" if np.all(finite > 0) else "symlog")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def log_z_error_vs_time(points: list[tuple[str, float, float]], path: str | Path, *, title: str = "") -> Path:
    """log Z error against wall time, both on log scales: one point per cell ``(sampler, wall_time,
    log_Z_error)``, one marker and colour per sampler. Non-positive values are drawn hollow at half the
    smallest positive value, so that a log scale can show them."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=100)
    labels = list(dict.fromkeys(p[0] for p in points))
    values = np.array([[p[1], p[2]] for p in points], dtype=float).reshape(-1, 2)
    positive = values[values > 0]
    floor = positive.min() / 2 if positive.size else 1e-12
    any_clipped = False
    for i, label in enumerate(labels):
        pts = np.array([[t, e] for s, t, e in points if s == label], dtype=float)
        clipped = np.any(pts <= 0, axis=1)
        any_clipped |= bool(clipped.any())
        pts = np.maximum(pts, floor)
        style = dict(marker=_MARKERS[i % len(_MARKERS)], s=30)
        if (~clipped).any():
            ax.scatter(pts[~clipped, 0], pts[~clipped, 1], color=f"C{i % 10}", label=label, **style)
        if clipped.any():
            ax.scatter(pts[clipped, 0], pts[clipped, 1], facecolors="none", edgecolors=f"C{i % 10}",
                       label=None if (~clipped).any() else label, **style)
    if any_clipped:
        ax.annotate("hollow: value 0, drawn at the axis floor", (0.01, 0.01), xycoords="axes fraction",
                    fontsize=6, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall time [s]")
    ax.set_ylabel("|log Ẑ − log Z|")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
