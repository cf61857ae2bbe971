"""physfm's models. Self-contained: pushed to the Hub as remote code, so nothing here imports
the rest of physfm."""

from .configuration_tokeniser import PhysfmTokeniserConfig
from .modeling_tokeniser import PhysfmTokeniserModel, PhysfmTokeniserOutput, PhysfmTokeniserPreTrainedModel

__all__ = [
    "PhysfmTokeniserConfig",
    "PhysfmTokeniserModel",
    "PhysfmTokeniserOutput",
    "PhysfmTokeniserPreTrainedModel",
]
