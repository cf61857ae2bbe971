"""The one reconstruction score: constant frames left out of VRMSE, spectra pooled, the same over any number of
processes, and the windows it scores."""

from __future__ import annotations

import pytest
import torch

from physfm.metrics import binned_spectral_mse, vrmse
from physfm.reconstruction import ReconstructionScore, evaluation_windows, reconstruction_metrics, shard


def _pair(seed: int = 0):
    """A target with one spatially constant (frame, field) entry and a noisy reconstruction of it."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(3, 4, 8, 8, 2, generator=generator)
    target[1, 0, ..., 0] = 0.5  # e.g. a velocity at rest in the first frame
    reconstruction = target + 0.1 * torch.randn(target.shape, generator=generator)
    return reconstruction, target


def test_constant_frames_are_left_out_and_the_spectrum_is_pooled():
    reconstruction, target = _pair()
    score = ReconstructionScore(["u", "v"])
    score.add(reconstruction, target, ["u", "v"], n_spatial_dims=2)
    result = score.result(2, 1, dataset="toy", n_frames=4)

    error = vrmse(reconstruction, target)  # [B, T, C]
    defined = torch.ones_like(error, dtype=torch.bool)
    defined[1, 0, 0] = False
    assert result.vrmse == pytest.approx(float(error[defined].mean()), rel=1e-6)
    assert result.vrmse_per_field["u"] == pytest.approx(float(error[..., 0][defined[..., 0]].mean()), rel=1e-6)
    assert float(error.mean()) > 100 * result.vrmse  # what counting the constant frame would report
    residual = binned_spectral_mse(reconstruction, target)
    power = binned_spectral_mse(torch.zeros_like(target), target)
    for band in ("low", "mid", "high"):
        pooled = float(residual[f"mse_{band}"].sum() / power[f"mse_{band}"].sum())
        assert getattr(result, f"spectral_nmse_{band}") == pytest.approx(pooled, rel=1e-5)
    assert result.mse == pytest.approx(float(((reconstruction - target) ** 2).mean()), rel=1e-6)
    assert (result.n_samples, result.dataset, result.n_frames) == (3, "toy", 4)


def test_a_field_subset_and_an_all_constant_field():
    reconstruction, target = _pair()
    target[..., 1] = 2.0  # v constant everywhere: no VRMSE for it, u still scored
    score = ReconstructionScore(["w", "u", "v"])
    score.add(reconstruction[..., :1], target[..., :1], ["u"], n_spatial_dims=2)
    score.add(reconstruction[..., 1:], target[..., 1:], ["v"], n_spatial_dims=2)
    assert set(score.result(2, 1).vrmse_per_field) == {"u"}
    only_constant = ReconstructionScore(["v"])
    only_constant.add(reconstruction[..., 1:], target[..., 1:], ["v"], n_spatial_dims=2)
    with pytest.raises(ValueError, match="every sampled frame is spatially constant"):
        only_constant.result(2, 1)


class _TwoProcesses:
    """Stands in for accelerate across two processes: ``reduce`` adds the other process's tensor."""

    num_processes, device = 2, torch.device("cpu")

    def __init__(self, other: ReconstructionScore):
        self.other = torch.cat(list(other.sums.values()))

    def reduce(self, tensor, reduction):
        assert reduction == "sum"
        return tensor + self.other


def test_shares_of_the_windows_reduce_to_the_whole():
    reconstruction, target = _pair()
    whole = ReconstructionScore(["u", "v"])
    whole.add(reconstruction, target, ["u", "v"], n_spatial_dims=2)
    parts = [ReconstructionScore(["u", "v"]) for _ in range(2)]
    for part, rows in zip(parts, ([0, 2], [1]), strict=True):
        part.add(reconstruction[rows], target[rows], ["u", "v"], n_spatial_dims=2)
    parts[0].reduce(_TwoProcesses(parts[1]))
    reduced, expected = vars(parts[0].result(2, 1)), vars(whole.result(2, 1))
    assert reduced.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, (float, dict)):
            assert reduced[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert reduced[key] == value, key


def test_windows_are_spread_evenly_and_shared_out_without_overlap():
    assert evaluation_windows(5, 0) == evaluation_windows(5, 9) == [0, 1, 2, 3, 4]
    chosen = evaluation_windows(101, 5)
    assert chosen == [0, 25, 50, 75, 100]
    for world in (1, 2, 3):
        ranks = [type("Rank", (), {"process_index": r, "num_processes": world})() for r in range(world)]
        shares = [evaluation_windows(101, 5, rank) for rank in ranks]
        assert sorted(i for share in shares for i in share) == chosen
        assert shares[0] == shard(chosen, ranks[0])


def test_the_training_table_averages_over_ratios():
    reconstruction, target = _pair()
    rows = []
    for s, scale in ((2, 1.0), (4, 2.0)):
        score = ReconstructionScore(["u", "v"])
        score.add(target + scale * (reconstruction - target), target, ["u", "v"], n_spatial_dims=2)
        rows.append(score.result(s, 1))
    table = reconstruction_metrics(rows)
    assert table["vrmse@s2t1"] == rows[0].vrmse and table["vrmse@s4t1"] == rows[1].vrmse
    assert table["vrmse"] == pytest.approx((rows[0].vrmse + rows[1].vrmse) / 2)
    assert table["loss"] == pytest.approx((rows[0].mse + rows[1].mse) / 2)
    assert set(table) == {"vrmse@s2t1", "vrmse@s4t1", "vrmse", "spectral_nmse_low", "spectral_nmse_mid",
                          "spectral_nmse_high", "loss"}
