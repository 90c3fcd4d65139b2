"""Pictures of samples (matplotlib, Agg backend: never opens a window)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["scatter_samples"]


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
