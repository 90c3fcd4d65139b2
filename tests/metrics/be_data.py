"""Arrays on which reference values were computed with the Beyond-ELBOs code (JAX, ott-jax 0.4.6, float64)."""
import numpy as np


def be_data():
    r = np.random.default_rng(0)
    gt, model = r.standard_normal((2000, 10)), r.standard_normal((2000, 10)) * 1.3 + 0.4
    gt2 = r.standard_normal((500, 2))
    model2 = np.concatenate([r.standard_normal((250, 2)) * 0.5 + 3, r.standard_normal((250, 2))])
    return gt, model, gt2, model2
