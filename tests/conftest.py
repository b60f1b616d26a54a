"""Shared fixtures: the simulated genome every layer's tests run on."""
import pytest

from genomics_bigbird.genome.simulate import SimulatedGenome, simulate

SIM_SEED = 0
SIM_SCALE = 0.2  # ~480 kbp + chrM, 48 promoters, ~2,460 chromatin bins; built in well under a second


@pytest.fixture(scope="session")
def sim_genome(tmp_path_factory) -> SimulatedGenome:
    """The simulated genome (seed 0, scale 0.2), built once per test session; treat it as read-only."""
    return simulate(tmp_path_factory.mktemp("sim_genome"), seed=SIM_SEED, scale=SIM_SCALE)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test process: pytest-xdist already runs one process per core, and
    oversubscribed threads made training steps ~50x slower on the 2-core CI machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
