"""Shared fixtures: the simulated genome every layer's tests run on, and a tiny BigBird classifier."""
import os

import pytest

# `gbb` commands run in-process take their default thread count from here (pipelines/threads.py):
# pytest-xdist already runs one process per core.
os.environ["OMP_NUM_THREADS"] = "1"

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
    oversubscribed threads made training steps ~50x slower on the 2-core CI machine.

    A `gbb --threads N` run in-process sets the thread variables for the rest of the process (as a
    CLI should); putting them back keeps that from reaching the next test in this worker, whose
    default thread count, and so its float reduction order, would otherwise depend on test order."""
    import torch

    from pipelines.threads import _ENV_VARS

    before = torch.get_num_threads()
    environment = {name: os.environ.get(name) for name in _ENV_VARS}
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def tiny_bigbird():
    """A 3-label BigBird classifier in train mode: vocab 40 (pad 0), 8-token blocks, at most 128 tokens.

    One global, three window and one random block: an input of more than 5 blocks is sparse, and
    its random blocks (drawn per block count) make its answer depend on how far it is padded.
    """
    import torch

    from genomics_bigbird.model import EncoderConfig, build_classifier

    config = EncoderConfig(vocab_size=40, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                           max_position=128, attention="bigbird", block_size=8, num_global_blocks=1,
                           window_blocks=3, num_random_blocks=1, attention_backend="gather", pad_id=0,
                           initializer_range=0.2)  # larger weights than the default, so padding effects show
    torch.manual_seed(0)
    return build_classifier(config, 3)


@pytest.fixture(scope="session")
def toy_chromatin_checkpoint():
    """A function that saves a random-weight 3-feature chromatin BigBird checkpoint for a tokenizer.

    Call it as make(directory, tokenizer, features, max_position, **extra) -> (model, config, checkpoint):
    2 x 32, 8-token blocks, one global, three window and one random block, large initial weights so
    scores differ between windows; `extra` goes into the checkpoint's metadata.
    """
    import torch

    from genomics_bigbird.model import EncoderConfig, build_classifier, save_checkpoint

    def make(directory, tokenizer, features, max_position, **extra):
        config = EncoderConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=2, num_heads=2,
                               intermediate_size=64, max_position=max_position, attention="bigbird", block_size=8,
                               num_global_blocks=1, window_blocks=3, num_random_blocks=1,
                               attention_backend="gather", initializer_range=0.3)
        torch.manual_seed(0)
        model = build_classifier(config, len(features)).eval()
        checkpoint = save_checkpoint(directory, model, model_config=config.to_dict(), task="chromatin",
                                     tokenizer_sha256=tokenizer.sha256, extra={"feature_names": features, **extra})
        return model, config, checkpoint

    return make
