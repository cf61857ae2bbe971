"""physfm: physics foundation models on the Hugging Face stack.

Importing physfm registers its models with transformers' Auto classes, so that
``AutoModel.from_pretrained("physfm/tokeniser-shear-flow")`` returns a physfm model.
"""

from transformers import AutoConfig, AutoModel

from .models import (
    PhysfmDynamicsConfig,
    PhysfmDynamicsModel,
    PhysfmDynamicsOutput,
    PhysfmTokeniserConfig,
    PhysfmTokeniserModel,
    PhysfmTokeniserOutput,
)

__version__ = "0.1.0"

for _config, _model in ((PhysfmTokeniserConfig, PhysfmTokeniserModel), (PhysfmDynamicsConfig, PhysfmDynamicsModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)

__all__ = [
    "PhysfmDynamicsConfig",
    "PhysfmDynamicsModel",
    "PhysfmDynamicsOutput",
    "PhysfmTokeniserConfig",
    "PhysfmTokeniserModel",
    "PhysfmTokeniserOutput",
]
