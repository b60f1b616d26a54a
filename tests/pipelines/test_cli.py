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


def test_every_available_command_has_help():
    for words in cli._available():
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *words, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (words, proc.stderr)
        assert "usage: gbb " + " ".join(words) in proc.stdout
