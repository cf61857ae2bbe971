"""physfm: physics foundation models on the Hugging Face stack.

Importing physfm registers its models with transformers' Auto classes, so that
``AutoModel.from_pretrained("physfm/tokeniser-shear-flow")`` returns a physfm model.
"""

from transformers import AutoConfig, AutoModel

try:  # DEV-SHIM (lead removes before commit): models are being written concurrently
    from .models import (
        PhysfmTokeniserConfig,
        PhysfmTokeniserModel,
        PhysfmTokeniserOutput,
    )
except ImportError:
    PhysfmTokeniserConfig = None

__version__ = "0.1.0"

if PhysfmTokeniserConfig is not None:
    AutoConfig.register(PhysfmTokeniserConfig.model_type, PhysfmTokeniserConfig, exist_ok=True)
    AutoModel.register(PhysfmTokeniserConfig, PhysfmTokeniserModel, exist_ok=True)

__all__ = [
    "PhysfmTokeniserConfig",
    "PhysfmTokeniserModel",
    "PhysfmTokeniserOutput",
]
