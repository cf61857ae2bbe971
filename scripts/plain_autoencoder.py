"""The plain convolutional autoencoder that the physfm tokeniser is measured against, in 2-D or 3-D.

A 3x3 (3x3x3) conv to ``width`` channels, two stride-2 4x4 (4x4x4) convs to ``2 * width``, a 1x1 conv to the
latent; the decoder mirrors it with nearest up-sampling and 3x3 convs; GELU; circular padding. It compresses 4x
per spatial axis and not at all in time: each frame is encoded on its own. Shared by the benchmark scripts.
"""

from __future__ import annotations

import torch
from torch import nn


class PlainAutoencoder(nn.Module):
    """Plain conv autoencoder on ``[batch, time, *space, fields]``, 4x spatial compression, frame by frame."""

    def __init__(self, n_fields: int, latent_channels: int = 16, width: int = 32, n_spatial_dims: int = 2):
        super().__init__()
        if n_spatial_dims not in (2, 3):
            raise ValueError(f"n_spatial_dims: got {n_spatial_dims}; expected 2 or 3.")
        conv = nn.Conv2d if n_spatial_dims == 2 else nn.Conv3d
        circular = dict(padding_mode="circular")
        self.n_spatial_dims = n_spatial_dims
        self.encoder = nn.Sequential(
            conv(n_fields, width, 3, padding=1, **circular), nn.GELU(),
            conv(width, 2 * width, 4, stride=2, padding=1, **circular), nn.GELU(),
            conv(2 * width, 2 * width, 4, stride=2, padding=1, **circular), nn.GELU(),
            conv(2 * width, latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            conv(latent_channels, 2 * width, 1), nn.GELU(),
            nn.Upsample(scale_factor=2), conv(2 * width, 2 * width, 3, padding=1, **circular), nn.GELU(),
            nn.Upsample(scale_factor=2), conv(2 * width, width, 3, padding=1, **circular), nn.GELU(),
            conv(width, n_fields, 3, padding=1, **circular),
        )

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        batch, frames = fields.shape[:2]
        # Frames are independent for this peer: fold time into the batch, channels first for torch's convs.
        x = fields.flatten(0, 1).movedim(-1, 1)
        y = self.decoder(self.encoder(x)).movedim(1, -1)
        return y.reshape(batch, frames, *y.shape[1:])
