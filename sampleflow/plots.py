"""Pictures of samples (matplotlib, Agg backend: never opens a window)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["scatter_samples", "training_curves"]


def scatter_samples(x, path: str | Path, *, reference=None, box=None, title: str = "", max_points: int = 5000,
                    dims: tuple[int, int] = (0, 1)) -> Path:
    """Scatter of two coordinates of ``x`` (over ``reference`` in grey, if given); 1-D data as a histogram."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)[:max_points]
    ref = None if reference is None else np.asarray(
        reference.detach().cpu() if hasattr(reference, "detach") else reference)[:max_points]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    if x.shape[1] == 1:
        bins = 80
        if ref is not None:
            ax.hist(ref[:, 0], bins=bins, density=True, color="0.75", label="reference")
        ax.hist(x[:, 0], bins=bins, density=True, histtype="step", color="C0", label="samples")
    else:
        i, j = dims
        if ref is not None:
            ax.scatter(ref[:, i], ref[:, j], s=2, c="0.7", alpha=0.5, label="reference", rasterized=True)
        ax.scatter(x[:, i], x[:, j], s=2, c="C0", alpha=0.6, label="samples", rasterized=True)
        ax.set_xlabel(f"x[{i}]")
        ax.set_ylabel(f"x[{j}]")
        if box is not None:
            lo, hi = (np.asarray(b) for b in box)
            ax.set_xlim(lo[i], hi[i])
            ax.set_ylim(lo[j], hi[j])
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"), binary=True)
    plt.close(fig)
    return path


def training_curves(history, path: str | Path, *, title: str = "", log_Z: float | None = None) -> Path:
    """Loss (left) and the running log Z estimates (right: importance-sampling ``logZ`` and ``elbo`` where
    recorded, with the true/reference ``log_Z`` as a dashed line) against the iteration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    it = np.asarray(h["iteration"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    loss = np.asarray(h["loss"], dtype=float)
    axes[0].plot(it, loss, color="C0")
    if np.all(loss[np.isfinite(loss)] > 0):
        axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("loss")
    for key, color in (("logZ", "C1"), ("elbo", "C2")):
        if key in h:
            axes[1].plot(it, np.asarray(h[key], dtype=float), color=color, label=key)
    if log_Z is not None:
        axes[1].axhline(log_Z, color="k", ls="--", lw=1, label="log Z")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("log Z estimate")
    if axes[1].lines:
        axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"), binary=True)
    plt.close(fig)
    return path
