"""keep_freed_memory: after it, a training step reuses the memory the step before freed, without page faults."""

import subprocess
import sys

import pytest

from physfm.training.cpu_memory import _glibc

# Minor page faults of the last of six training steps, with glibc's defaults and then after keep_freed_memory.
# In a fresh process: the setting is process-wide, and the trainer makes it in this one.
STEPS = """
import resource, torch
from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.training import keep_freed_memory

model = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["u", "v"], hidden_channels=8))
fields = torch.randn(2, 5, 64, 64, 2)

def faults_in_a_later_step():
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(fields, spatial_compression=4, temporal_compression=2).loss.backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

system = faults_in_a_later_step()
assert keep_freed_memory()
print(system, faults_in_a_later_step())
"""


@pytest.mark.skipif(_glibc() is None, reason="the thresholds keep_freed_memory sets are glibc's")
def test_a_step_reuses_the_memory_the_previous_step_freed():
    result = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, check=True)
    system, kept = map(int, result.stdout.split()[-2:])
    if system < 200:
        pytest.skip(f"this glibc already reuses the freed memory ({system} page faults in a step)")
    assert kept < system / 10, (system, kept)


@pytest.mark.parametrize("keep", [True, False])
def test_the_trainer_keeps_freed_memory_on_cpu_unless_told_not_to(tmp_path, monkeypatch, keep):
    from test_training_common import TINY_TOKENISER, make_dataset

    from physfm.training import train

    calls = []
    monkeypatch.setattr("physfm.training.trainer.keep_freed_memory", lambda: calls.append(True) or True)
    train(stage="tokeniser", data=[make_dataset(tmp_path / "adv")], output_dir=tmp_path / "tok", max_steps=1,
          eval_steps=0, save_steps=0, spatial_compression=[2, 4], temporal_compression=[1], count_flops=False,
          disable_tqdm=True, model_config=TINY_TOKENISER, keep_freed_memory=keep)
    assert calls == ([True] if keep else [])
