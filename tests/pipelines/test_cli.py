import subprocess
import sys

from pipelines import cli


def test_version_and_help(capsys):
    assert cli.main(["--version"]) == 0
    assert "gbb 0.1.0" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out


def test_unknown_command_is_one_line_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command" in err[0]


def test_parse_returns_the_module_and_its_options_without_running():
    import pytest

    from genomics_bigbird.errors import InputError

    module, args = cli.parse(["finetune", "chromatin", "train.steps=3", "--data", "c.h5", "--quiet"])
    assert module.__name__ == "pipelines.finetune"
    assert args.command == ("finetune", "chromatin")
    assert (args.data, args.overrides, args.quiet) == ("c.h5", ["train.steps=3"], True)
    with pytest.raises(InputError, match="unknown command 'frobnicate'"):
        cli.parse(["frobnicate"])
    with pytest.raises(SystemExit):
        cli.parse(["evaluate", "--checkpoint", "best"])  # --data, --tokenizer, --out are required


def test_every_available_command_has_help():
    for words in cli._available():
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *words, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (words, proc.stderr)
        assert "usage: gbb " + " ".join(words) in proc.stdout
