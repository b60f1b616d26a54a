import pytest
import torch

from genomics_bigbird.train.schedule import warmup_linear_decay, warmup_linear_decay_scheduler


def test_boundaries_of_base_schedule():
    # base: 10,000 warmup steps; peak exactly at the end of warmup, zero at the last step
    total = 100_000
    assert warmup_linear_decay(0, 10_000, total) == 0.0
    assert warmup_linear_decay(1, 10_000, total) == pytest.approx(1e-4)
    assert warmup_linear_decay(5_000, 10_000, total) == pytest.approx(0.5)
    assert warmup_linear_decay(9_999, 10_000, total) == pytest.approx(0.9999)
    assert warmup_linear_decay(10_000, 10_000, total) == 1.0
    assert warmup_linear_decay(55_000, 10_000, total) == pytest.approx(0.5)
    assert warmup_linear_decay(total, 10_000, total) == 0.0
    assert warmup_linear_decay(total + 7, 10_000, total) == 0.0


def test_no_warmup_and_invalid_arguments():
    assert warmup_linear_decay(0, 0, 10) == 1.0
    assert warmup_linear_decay(5, 0, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        warmup_linear_decay(0, 11, 10)
    with pytest.raises(ValueError):
        warmup_linear_decay(0, 0, 0)


def test_scheduler_sets_optimizer_lr():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-4)
    scheduler = warmup_linear_decay_scheduler(optimizer, warmup_steps=4, total_steps=12)
    seen = []
    for _ in range(13):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0, 0.25e-4, 0.5e-4, 0.75e-4, 1e-4, 0.875e-4, 0.75e-4, 0.625e-4, 0.5e-4,
                0.375e-4, 0.25e-4, 0.125e-4, 0.0]
    assert seen == pytest.approx(expected)
