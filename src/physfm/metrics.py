"""The Well's evaluation metrics on ``[..., *space, C]`` tensors, reduced over space only.

Same definitions (and numbers, to float rounding) as ``the_well.benchmark.metrics``:

* ``vrmse``  = sqrt(MSE / (var(y) + eps)), unbiased variance over space;
* ``nrmse``  = sqrt(MSE / (mean(y**2) + eps));
* ``binned_spectral_mse``: the residual's power in low / mid / high radial-wavenumber bins (edges
  ``logspace(log10(2*pi/max N), log10(pi*sqrt(d)), 4)`` with the first set to 0), as an MSE by
  Parseval, and its ratio (NMSE) to the target's power in that bin.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-7
BIN_NAMES = ("low", "mid", "high")


def _spatial_axes(x: torch.Tensor, n_spatial_dims: int, name: str) -> tuple[int, ...]:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim < n_spatial_dims + 1:
        raise ValueError(f"{name}: shape {tuple(x.shape)} has fewer than n_spatial_dims + 1 = "
                         f"{n_spatial_dims + 1} axes; expected [..., *space, C]")
    return tuple(range(-n_spatial_dims - 1, -1))


def _check_pair(pred: torch.Tensor, target: torch.Tensor, n_spatial_dims: int) -> tuple[int, ...]:
    axes = _spatial_axes(pred, n_spatial_dims, "pred")
    _spatial_axes(target, n_spatial_dims, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; expected "
                         "identical [..., *space, C]")
    return axes


def mse(pred: torch.Tensor, target: torch.Tensor, n_spatial_dims: int = 2) -> torch.Tensor:
    """Mean squared error over the spatial axes -> ``[..., C]``."""
    axes = _check_pair(pred, target, n_spatial_dims)
    return ((pred - target) ** 2).mean(dim=axes)


def vrmse(pred: torch.Tensor, target: torch.Tensor, n_spatial_dims: int = 2, eps: float = EPS) -> torch.Tensor:
    """Variance-scaled RMSE: ``sqrt(MSE / (var(target) + eps))`` per ``[..., C]`` (unbiased variance)."""
    axes = _check_pair(pred, target, n_spatial_dims)
    var = torch.std(target, dim=axes) ** 2  # std**2, not var(): the peer's exact float path
    return torch.sqrt(((pred - target) ** 2).mean(dim=axes) / (var + eps))


def nrmse(pred: torch.Tensor, target: torch.Tensor, n_spatial_dims: int = 2, eps: float = EPS) -> torch.Tensor:
    """Norm-scaled RMSE: ``sqrt(MSE / (mean(target**2) + eps))`` per ``[..., C]``."""
    axes = _check_pair(pred, target, n_spatial_dims)
    norm = (target**2).mean(dim=axes)
    return torch.sqrt(((pred - target) ** 2).mean(dim=axes) / (norm + eps))


def _radial_bins(spatial_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Bin index (0, 1, 2; 3 = beyond the last edge) of every Fourier mode, flattened over space."""
    k2 = torch.zeros(spatial_shape, device=device)
    for axis, n in enumerate(spatial_shape):
        k = 2 * math.pi * torch.fft.fftfreq(n, device=device)
        k2 = k2 + k.reshape([n if a == axis else 1 for a in range(len(spatial_shape))]) ** 2
    k = k2.sqrt().flatten()
    d = len(spatial_shape)
    edges = torch.logspace(math.log10(2 * math.pi / max(spatial_shape)), math.log10(math.pi * math.sqrt(d) + 1e-6),
                           4, device=device)
    edges[0] = 0.0
    return torch.bucketize(k, edges, right=True) - 1


def binned_spectral_mse(pred: torch.Tensor, target: torch.Tensor, n_spatial_dims: int = 2,
                        eps: float = EPS) -> dict[str, torch.Tensor]:
    """Spectral error in three radial-wavenumber bins.

    Returns ``{"mse_low", "mse_mid", "mse_high", "nmse_low", "nmse_mid", "nmse_high"}``, each ``[..., C]``.
    The three MSEs sum to the plain MSE up to modes beyond the last edge (none on a regular grid).
    """
    axes = _check_pair(pred, target, n_spatial_dims)
    spatial_shape = tuple(pred.shape[a] for a in axes)
    n_total = math.prod(spatial_shape)
    bins = _radial_bins(spatial_shape, pred.device)
    one_hot = torch.nn.functional.one_hot(bins, num_classes=4)[:, :3].to(pred.dtype)  # [modes, 3]

    def power_per_bin(x: torch.Tensor) -> torch.Tensor:
        # |FFT|^2 summed per bin; the peer averages per bin then multiplies back by the count (same value).
        power = torch.fft.fftn(x, dim=axes).abs() ** 2
        power = power.reshape(*x.shape[: axes[0] + x.ndim], n_total, x.shape[-1])
        return torch.einsum("...mc,mb->...bc", power, one_hot) / n_total**2

    residual = power_per_bin(pred - target)
    energy = power_per_bin(target)
    nmse = residual / (energy + eps)
    out = {f"mse_{name}": residual[..., i, :] for i, name in enumerate(BIN_NAMES)}
    out |= {f"nmse_{name}": nmse[..., i, :] for i, name in enumerate(BIN_NAMES)}
    return out


__all__ = ["binned_spectral_mse", "mse", "nrmse", "vrmse"]
