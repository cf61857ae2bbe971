"""physfm: physics foundation models on the Hugging Face stack.

Importing physfm registers its models with transformers' Auto classes, so that
``AutoModel.from_pretrained("physfm/tokeniser-shear-flow")`` returns a physfm model, and
``AutoProcessor.from_pretrained`` (or ``AutoFeatureExtractor``) its :class:`PhysfmFieldProcessor`.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor

from .models import (
    NonFiniteError,
    PhysfmDynamicsConfig,
    PhysfmDynamicsModel,
    PhysfmDynamicsOutput,
    PhysfmFieldProcessor,
    PhysfmTokeniserConfig,
    PhysfmTokeniserModel,
    PhysfmTokeniserOutput,
)

__version__ = "0.1.0"

for _config, _model in ((PhysfmTokeniserConfig, PhysfmTokeniserModel), (PhysfmDynamicsConfig, PhysfmDynamicsModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    # Both Auto classes look the processor up by the class name in preprocessor_config.json among registered ones.
    AutoProcessor.register(_config, PhysfmFieldProcessor, exist_ok=True)
    AutoFeatureExtractor.register(_config, PhysfmFieldProcessor, exist_ok=True)


def forecast(model_id_or_path, fields, n_steps, **kwargs):
    """A forecast in physical units from raw fields or a data file (see :func:`physfm.forecasting.forecast`).

    Imported on call: the forecast pulls in the data and plotting code, which ``import physfm`` should not.
    """
    from .forecasting import forecast as _forecast

    return _forecast(model_id_or_path, fields, n_steps, **kwargs)


__all__ = [
    "NonFiniteError",
    "PhysfmDynamicsConfig",
    "PhysfmDynamicsModel",
    "PhysfmDynamicsOutput",
    "PhysfmFieldProcessor",
    "PhysfmTokeniserConfig",
    "PhysfmTokeniserModel",
    "PhysfmTokeniserOutput",
    "forecast",
]
