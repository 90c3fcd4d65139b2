"""sampleflow: sampling by learned dynamical measure transport.

    import sampleflow as sf
    t = sf.targets.get("funnel")
    s = sf.sample(t, "importance", n=2000, seed=0)
    sf.evaluate(s, t)
"""
from . import metrics, samplers, targets
from .api import sample
from .metrics.evaluate import evaluate
from .samples import Samples
from .targets import LogZ, Target

__version__ = "0.1.0"

__all__ = ["targets", "samplers", "metrics", "Target", "LogZ", "Samples", "sample", "evaluate", "__version__"]
