"""physfm tokeniser quickstart: one model, several compression ratios, any subset of its fields."""

import torch

from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.training import fit_autoencoder

config = PhysfmTokeniserConfig(
    field_names=["tracer", "pressure", "velocity_x", "velocity_y"],  # the field vocabulary
    periodic=[True, True],                 # circular padding on both axes
    spatial_compressions=[2, 4, 8, 16],    # every ratio one checkpoint serves
    temporal_compressions=[1, 2, 4],
    hidden_channels=8,                     # tiny, so this runs in seconds on a CPU
)
tok = PhysfmTokeniserModel(config)

# The Well's layout: [batch, time, x, y, fields], z-scored. T = 1 + k*t frames.
fields = torch.randn(2, 5, 32, 32, 4)

# Pick the compression at run time, with the same weights.
with torch.no_grad():
    z = tok.encode(fields, spatial_compression=8, temporal_compression=2)
    print("latents", tuple(z.shape))   # (2, 3, 4, 4, 16): 1 + (5 - 1) / 2 frames, 32 / 8 cells
    x = tok.decode(z, spatial_compression=8, temporal_compression=2)
    print("decoded", tuple(x.shape))   # (2, 5, 32, 32, 4)

    # A system with only some of the fields, in any order; sizes need not divide the ratio
    # (padded inside, cropped back).
    velocity = torch.randn(1, 1, 30, 30, 2)
    out = tok(velocity, spatial_compression=4, field_names=["velocity_y", "velocity_x"])
    print("reconstruction", tuple(out.reconstruction.shape), "loss", round(float(out.loss), 3))

# Train a few steps with one ratio drawn per batch (how one checkpoint learns every ratio).
history = fit_autoencoder(tok, fields, steps=5, lr=1e-3, generator=torch.Generator().manual_seed(0))
print("losses", [round(loss, 3) for loss in history])

# Grow the vocabulary, save (safetensors + model code), and load back.
tok.add_fields(["density"])
tok.save_pretrained("quickstart-tokeniser")
reloaded = PhysfmTokeniserModel.from_pretrained("quickstart-tokeniser", dtype=torch.float32)
print("fields", reloaded.config.field_names)
