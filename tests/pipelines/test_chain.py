"""CommandChain.parallel: groups run in their own processes, in order within a group, failures named."""
import pytest

from genomics_bigbird.errors import InputError
from pipelines.chain import CommandChain
from pipelines.job import Job


def simulate(out, scale=0.05):
    return ["simulate", "--out", out, "--scale", scale, "--quiet"]


def test_groups_run_in_parallel_processes_and_are_recorded(tmp_path):
    with Job("chain", tmp_path, quiet=True) as job:
        chain = CommandChain(job, tmp_path / "commands.sh", [], title="test")
        chain.parallel([[("sim a", simulate(tmp_path / "a")), ("sim a again", simulate(tmp_path / "a2"))],
                        [("sim b", simulate(tmp_path / "b"))]], workers=2, threads=2)
    for name in ("a", "a2", "b"):
        assert (tmp_path / name / "genome.fa").is_file()
    assert (tmp_path / "a" / "genome.fa").read_bytes() == (tmp_path / "b" / "genome.fa").read_bytes()
    assert set(chain.timings) == {"sim a", "sim a again", "sim b"}
    script = (tmp_path / "commands.sh").read_text()
    assert script.count("gbb simulate") == 3 and "# worker 2 of 2" in script


def test_a_failing_group_is_named_after_the_others_finish(tmp_path):
    with pytest.raises(InputError, match="'bad'"):
        with Job("chain", tmp_path, quiet=True) as job:
            chain = CommandChain(job, tmp_path / "commands.sh", [], title="test")
            chain.parallel([[("bad", simulate(tmp_path / "bad", scale=100)), ("never", simulate(tmp_path / "x"))],
                            [("good", simulate(tmp_path / "good"))]], workers=2, threads=2)
    assert (tmp_path / "good" / "genome.fa").is_file()
    assert not (tmp_path / "x").exists(), "a group stops at its first failure"
