"""Every `configs/**/*.yaml` loads into the dataclass its directory stands for (litgpt-style)."""
import dataclasses
import importlib
from pathlib import Path

import pytest

from pipelines.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# configs/<directory>/... (or configs/<directory>/<stem> where one directory holds several kinds)
# -> "module:DataclassName". A YAML whose directory is missing here fails the test.
CONFIG_CLASSES = {
    "model": "genomics_bigbird.model.config:EncoderConfig",
    "pretrain": "pipelines.pretrain:PretrainConfig",
    "finetune": "pipelines.finetune:FinetuneConfig",
    "tasks/promoter": "pipelines.promoter:PromoterPrepareConfig",
    "tasks/chromatin": "pipelines.chromatin:ChromatinPrepareConfig",
    "experiment": "pipelines.experiment:ContextExperimentConfig",
}


def config_files() -> list[Path]:
    return sorted(p for pattern in ("*.yaml", "*.yml") for p in CONFIGS.rglob(pattern))


def config_class(path: Path) -> type:
    relative = path.relative_to(CONFIGS)
    spec = CONFIG_CLASSES.get(relative.with_suffix("").as_posix()) or CONFIG_CLASSES.get(relative.parts[0])
    assert spec, (f"{path}: no dataclass is known for configs/{relative.parts[0]}/; "
                  "add it to CONFIG_CLASSES in tests/test_configs.py")
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", config_files(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_loads_into_its_dataclass(path):
    config = load_config(config_class(path), path)
    assert dataclasses.is_dataclass(config)


def test_model_configs_have_the_documented_sizes():
    from genomics_bigbird.model.config import EncoderConfig

    found = {p.stem for p in (CONFIGS / "model").glob("*.yaml")}
    assert {"tiny", "base", "large"} <= found
    base = load_config(EncoderConfig, CONFIGS / "model" / "base.yaml")
    # BigBird appendix F, Table 21 (pretraining column).
    assert (base.num_layers, base.hidden_size, base.num_heads, base.head_dim) == (12, 768, 12, 64)
    assert (base.max_position, base.vocab_size, base.dropout) == (4096, 32000, 0.1)
    assert (base.attention, base.block_size, base.global_placement) == ("bigbird", 64, "first")
    assert (base.num_global_blocks, base.window_blocks, base.num_random_blocks) == (2, 3, 3)
    assert base == EncoderConfig()  # the dataclass defaults are the base model
    large = load_config(EncoderConfig, CONFIGS / "model" / "large.yaml")
    assert (large.num_layers, large.hidden_size, large.num_heads, large.head_dim) == (24, 1024, 16, 64)
    tiny = load_config(EncoderConfig, CONFIGS / "model" / "tiny.yaml")
    assert tiny.num_layers * tiny.hidden_size < base.num_layers * base.hidden_size / 10
    assert tiny.max_position % tiny.block_size == 0


def test_unknown_keys_are_refused_by_name(tmp_path):
    """A misspelt key in a file or an override is an error naming it, never silently ignored."""
    from genomics_bigbird.errors import InputError
    from pipelines.finetune import FinetuneConfig

    finetune = CONFIGS / "finetune" / "tiny_promoter.yaml"
    for overrides, named in [(["data.dir=out/promoter"], "'dir'"), (["pretrain=out/pretrain/final"], "'pretrain'"),
                             (["train.step=10"], "'step'"), (["model.pretrained=x"], "model is not a section")]:
        with pytest.raises(InputError, match=named):
            load_config(FinetuneConfig, finetune, overrides)
    with pytest.raises(InputError, match="'upstream'"):  # a prepare config is no fine-tuning config
        load_config(FinetuneConfig, CONFIGS / "tasks" / "promoter.yaml")
    nested = tmp_path / "nested.yaml"
    nested.write_text("data:\n  path: x.h5\n  shuffle: true\n")
    with pytest.raises(InputError, match=r"data: unknown key\(s\) \['shuffle'\]"):
        load_config(FinetuneConfig, nested)


def test_a_missing_or_empty_config_is_an_error_never_the_defaults(tmp_path, monkeypatch, capsys):
    """A config that cannot be found, or is empty, is a one-line error: not {} and not the dataclass defaults."""
    from genomics_bigbird.errors import InputError
    from pipelines import cli, config
    from pipelines.finetune import FinetuneConfig
    from pipelines.pretrain import resolve_model_config
    from pipelines.training import deepspeed_extra

    monkeypatch.chdir(tmp_path)  # relative paths no longer resolve from the working directory
    assert load_config(FinetuneConfig, "configs/finetune/tiny_promoter.yaml").train.epochs == 3  # shipped copy
    with pytest.raises(InputError, match="config file not found"):
        load_config(FinetuneConfig, "configs/finetune/tiny_promter.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    with pytest.raises(InputError, match="the config file is empty"):
        load_config(FinetuneConfig, empty)
    with pytest.raises(InputError, match="the config file is empty"):
        resolve_model_config({"config": str(empty), "vocab_size": 64})

    # An installation without the shipped configs: the defaults they name are errors too.
    monkeypatch.setattr(config, "SHIPPED_ROOTS", (tmp_path / "site-packages",))
    with pytest.raises(InputError, match="configs/deepspeed/zero2.json"):
        deepspeed_extra(FinetuneConfig().train)
    assert cli.main(["finetune", "promoter", "--data", "p.h5", "--tokenizer", "t.model", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "configs/finetune/promoter.yaml: config file not found" in err[0]
