"""Well-format data: read/write HDF5, windowed datasets, normalisation, conversion, ``datasets`` bridge."""

from .dataset import WellWindowDataset
from .field_processor import processor_for_datasets, processor_from_dataset
from .stats import Normalizer, load_stats, write_stats
from .well_format import (
    DatasetMetadata,
    FileHeader,
    compute_stats,
    read_file_header,
    read_trajectory,
    read_well_metadata,
    write_well_dataset,
)

__all__ = [
    "DatasetMetadata",
    "FileHeader",
    "Normalizer",
    "WellWindowDataset",
    "compute_stats",
    "load_stats",
    "processor_for_datasets",
    "processor_from_dataset",
    "read_file_header",
    "read_trajectory",
    "read_well_metadata",
    "write_stats",
    "write_well_dataset",
]

# The converter and the `datasets` bridge are imported on demand (``physfm.data.convert``,
# ``physfm.data.hf_datasets``) so that ``import physfm.data`` stays light.
