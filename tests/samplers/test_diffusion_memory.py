"""Memory of the detached (log-variance) loss: with ``replay_chunk`` the tensors kept for the backward pass
are the stored trajectory and scores only (the network's activations are recomputed chunk by chunk), so
beyond the solver's own state nothing grows with the number of steps."""
import pytest
import torch

import sampleflow as sf


def _saved_bytes(K, chunk, loss="lv", d=4, batch=256):
    t = sf.targets.get("gaussian", dim=d)
    s = sf.samplers.DIS(t, sf.samplers.DIS.make_config("test", n_steps=K, batch_size=batch, replay_chunk=chunk,
                                                       loss=loss))
    seen = {}

    def pack(x):
        seen[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss_value, _ = s.loss_and_info(t, torch.Generator().manual_seed(0))
    loss_value.backward()  # the graph is usable
    return sum(seen.values())


@pytest.mark.parametrize("K", [10, 40])
def test_chunked_replay_keeps_only_the_trajectory(K):
    d, batch = 4, 256
    state = 2 * (K + 1) * batch * d * 4          # points and scores, float32
    chunked = _saved_bytes(K, 5, d=d, batch=batch)
    full = _saved_bytes(K, None, d=d, batch=batch)
    assert chunked <= 1.2 * state, (chunked, state)
    assert full > 20 * state, (full, state)       # activations of the whole replay
