import torch

from sampleflow.generative import ScoreMLP, ScoreModel, VPSDE, dsm_loss, heun_edm, make_moons
from sampleflow.metrics import sliced_wasserstein


def test_score_mlp_learns_moons():
    """300 Adam steps (batch 256, lr 3e-3) of ε-prediction DSM on 2000 moons points with the reference
    ScoreMLP: the held-out-noise DSM loss falls from 2.07 to ≈ 0.48 (asserted < 0.7), and 35-NFE Heun
    samples are at SW₂ ≈ 0.19 from the data (asserted < 0.3; N(0, I) samples: ≈ 0.56)."""
    torch.manual_seed(0)  # not used by the code under test; guards against accidental global RNG use
    data = make_moons(2000, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    net = ScoreMLP(2, width=64, depth=3, generator=torch.Generator().manual_seed(0))
    model = ScoreModel(net, sde, "eps")

    def held_out():
        with torch.no_grad():
            return float(dsm_loss(model, data, torch.Generator().manual_seed(99)))

    before = held_out()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        idx = torch.randint(0, data.shape[0], (256,), generator=g)
        loss = dsm_loss(model, data[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out()
    assert before > 1.5 and after < 0.7, (before, after)
    x = heun_edm(model, sde, (1000, 2), generator=torch.Generator().manual_seed(3)).x
    assert sliced_wasserstein(x, data) < 0.3
