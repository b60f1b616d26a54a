"""Shared fixtures: the simulated genome every layer's tests run on."""
import pytest

from genomics_bigbird.genome.simulate import SimulatedGenome, simulate

SIM_SEED = 0
SIM_SCALE = 0.2  # ~480 kbp + chrM, 48 promoters, ~2,460 chromatin bins; built in well under a second


@pytest.fixture(scope="session")
def sim_genome(tmp_path_factory) -> SimulatedGenome:
    """The simulated genome (seed 0, scale 0.2), built once per test session; treat it as read-only."""
    return simulate(tmp_path_factory.mktemp("sim_genome"), seed=SIM_SEED, scale=SIM_SCALE)
