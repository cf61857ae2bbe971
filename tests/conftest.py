import os

import pytest
import torch

pytest_plugins = ["hub_server"]  # the `hub_server` fixture: a local Hub-compatible server

# The tiny test models run fastest single-threaded; extra threads only add contention.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
