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


# Libraries that take a second or more to import: `gbb COMMAND --help` must not need them, so every
# command starts at once (the pipelines import them inside the functions that use them).
HEAVY = ("torch", "deepspeed", "transformers", "pandas", "sklearn", "scipy", "matplotlib")
HELP_PROBE = """
import json, sys
from pipelines import cli
try:
    cli.main(sys.argv[1:])
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
print(json.dumps(sorted(name for name in %r if name in sys.modules)), file=sys.stderr)
""" % (HEAVY,)


def test_every_available_command_has_help_without_importing_heavy_libraries():
    for words in cli._available():
        proc = subprocess.run([sys.executable, "-c", HELP_PROBE, *words, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (words, proc.stderr)
        assert "usage: gbb " + " ".join(words) in proc.stdout
        assert proc.stderr.strip().splitlines()[-1] == "[]", (words, proc.stderr.strip().splitlines()[-1])
