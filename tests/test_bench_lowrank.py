"""The low-rank yardstick of bench/mae_lowrank.py: it must recover what rank determines."""

import torch

from bench.mae_lowrank import energy_beyond, low_rank_completion


def _low_rank(b: int, t: int, r: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, r, generator=g) @ torch.randn(b, r, t, generator=g) / r**0.5


def test_completion_recovers_hidden_entries_of_a_low_rank_matrix():
    m = _low_rank(2, 48, 4)
    observed = (torch.rand(2, 48, 48, generator=torch.Generator().manual_seed(1)) > 0.3).float()
    fit = low_rank_completion(m, observed, rank=4, ridge=1e-4, sweeps=50)
    hidden = observed == 0
    err = ((fit - m)[hidden] ** 2).mean() / (m[hidden] ** 2).mean()
    assert err < 1e-3
    # a rank too small cannot: the yardstick is not just smoothing
    fit2 = low_rank_completion(m, observed, rank=2, ridge=1e-4, sweeps=50)
    assert ((fit2 - m)[hidden] ** 2).mean() / (m[hidden] ** 2).mean() > 0.05


def test_unobserved_rows_shrink_to_zero():
    m = _low_rank(1, 16, 2)
    observed = torch.ones(1, 16, 16)
    observed[:, 3] = 0  # row 3 never seen
    fit = low_rank_completion(m, observed, rank=2, ridge=0.3)
    assert fit[0, 3].abs().max() < 1e-6


def test_energy_beyond_rank():
    images = (_low_rank(3, 32, 5) + 3.0).unsqueeze(1)  # rank 5, + 1 for the constant and centring
    left = energy_beyond(images, ranks=(4, 6))
    assert (left[:, 0] > 1e-3).all() and (left[:, 1] < 1e-9).all()
