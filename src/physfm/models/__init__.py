"""physfm's models. Self-contained: pushed to the Hub as remote code, so nothing here imports
the rest of physfm."""

from .configuration_dynamics import PhysfmDynamicsConfig
from .configuration_tokeniser import PhysfmTokeniserConfig
from .input_checks import NonFiniteError, finite_checks
from .modeling_dynamics import PhysfmDynamicsModel, PhysfmDynamicsOutput, PhysfmDynamicsPreTrainedModel
from .modeling_tokeniser import PhysfmTokeniserModel, PhysfmTokeniserOutput, PhysfmTokeniserPreTrainedModel
from .processing_physfm import PhysfmFieldProcessor

__all__ = [
    "NonFiniteError",
    "PhysfmDynamicsConfig",
    "PhysfmDynamicsModel",
    "PhysfmDynamicsOutput",
    "PhysfmDynamicsPreTrainedModel",
    "PhysfmFieldProcessor",
    "PhysfmTokeniserConfig",
    "PhysfmTokeniserModel",
    "PhysfmTokeniserOutput",
    "PhysfmTokeniserPreTrainedModel",
    "finite_checks",
]
