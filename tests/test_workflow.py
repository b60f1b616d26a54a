"""workflows/Snakefile: a dry run (`snakemake -n`) plans the whole real-data chain, and every
`gbb` command it would run is accepted by gbb's own parsers and config loader and reads what an
earlier command writes.

Snakemake is a project dependency (the `workflow` extra): if it is missing these tests fail.
"""
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from genomics_bigbird.errors import InputError
from pipelines import cli
from pipelines.config import load_config

SNAKEFILE = Path(__file__).resolve().parents[1] / "workflows" / "Snakefile"
CHAIN = ["corpus", "tokenizer", "shards", "pretrain", "promoter_prepare", "chromatin_prepare",
         "finetune", "evaluate", "score_variants", "all"]
PENDING = "<TBD>"  # how a dry run shows inputs that a checkpoint decides (the FASTA's contigs)


def snakemake_dry_run(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "-s", str(SNAKEFILE),
                           "--directory", str(workdir), *extra], capture_output=True, text=True, timeout=120)


def dry_run_lines(workdir: Path, *extra: str) -> list[str]:
    proc = snakemake_dry_run(workdir, *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (proc.stdout + proc.stderr).splitlines()


def dry_run(workdir: Path, *extra: str) -> tuple[dict[str, int], list[str]]:
    """Run `snakemake -n -p`; return the planned jobs per rule and the shell commands."""
    lines = dry_run_lines(workdir, *extra)
    jobs: dict[str, int] = {}
    if "Nothing to be done (all requested files are present and up to date)." not in lines:
        table = lines[lines.index("Job stats:") + 3:]
        for line in table[: table.index(next(t for t in table if t.startswith("total")))]:
            rule, count = line.split()
            jobs[rule] = int(count)
    commands = [line.split("Shell command:", 1)[1].strip() for line in lines if "Shell command:" in line]
    return jobs, commands


def test_default_config_fetches_then_runs_the_chain(tmp_path):
    jobs, commands = dry_run(tmp_path)
    fetched = ["fetch_hg19", "fetch_epdnew_hs", "fetch_hg38ToHg19_chain", "fetch_deepsea_bundle",
               "fetch_clinvar_grch37"]
    # The per-contig corpus and shards jobs are planned once contig_list has read the downloaded FASTA.
    assert jobs == {**{r: 1 for r in fetched + ["prepare_fasta", "unpack_deepsea", "verify_data", "contig_list"]
                       + CHAIN}, "finetune": 2, "evaluate": 2}
    assert "gbb data fetch hg19 --dest data --quiet > runs/workflow/logs/fetch_hg19.log 2>&1" in commands
    assert any(c.startswith("gbb corpus --merge <TBD> --out runs/workflow/corpus") for c in commands)
    # The base configs, the downloads' file names and the non-gbb steps (gunzip, tar) in between.
    steps = check_workflow(planned_jobs(dry_run_lines(tmp_path)), tmp_path)
    assert Counter(s.words for s in steps if s.words) == EXPECTED_COMMANDS + Counter(
        {("data", "fetch"): len(fetched), ("data", "verify"): 1, ("corpus",): -2, ("shards",): -2})


def placeholder_config(tmp_path: Path, **changes) -> Path:
    inputs = tmp_path / "inputs"
    (inputs / "deepsea").mkdir(parents=True, exist_ok=True)
    for name in ["toy.fa", "tss.bed", "toy.chain", "toy.vcf.gz"]:
        (inputs / name).write_text("placeholder\n")
    config = {"gbb": "gbb", "out_dir": "out", "fasta": str(inputs / "toy.fa"),
              "promoter_bed": str(inputs / "tss.bed"), "chain": str(inputs / "toy.chain"),
              "deepsea_dir": str(inputs / "deepsea"), "vcf": str(inputs / "toy.vcf.gz"),
              "model_size": "tiny", "corpus": {"passes": 1, "contigs": ["chr21", "chr22"]},
              "variants": {"task": "promoter", "region": "chr22"}, **changes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_own_inputs_skip_downloads_and_wire_every_step(tmp_path):
    config = placeholder_config(tmp_path)
    jobs, commands = dry_run(tmp_path, "--configfile", str(config))
    assert jobs == {**{r: 1 for r in CHAIN}, "finetune": 2, "evaluate": 2, "corpus_contig": 2, "shards_contig": 2}
    fasta = tmp_path / "inputs" / "toy.fa"
    for contig in ("chr21", "chr22"):  # one job per contig of corpus.contigs, then a gather job
        assert (f"gbb corpus --fasta {fasta} --contigs {contig} --out out/corpus/contigs/{contig} --passes 1 --seed 0 "
                f"--threads 1 > out/logs/corpus/{contig}.log 2>&1") in commands
        assert (f"gbb shards --corpus out/corpus/contigs/{contig} --tokenizer out/tokenizer/dna_bpe.model "
                f"--out out/shards/contigs/{contig} --threads 1 > out/logs/shards/{contig}.log 2>&1") in commands
    assert ("gbb corpus --merge out/corpus/contigs/chr21 out/corpus/contigs/chr22 --out out/corpus "
            "> out/logs/corpus.log 2>&1") in commands
    assert ("gbb shards --merge out/shards/contigs/chr21 out/shards/contigs/chr22 --out out/shards "
            "> out/logs/shards.log 2>&1") in commands
    score = next(c for c in commands if c.startswith("gbb score-variants"))
    assert ("--checkpoint out/finetune_promoter/best --tokenizer out/tokenizer/dna_bpe.model --width 8000 "
            "--region chr22 --out out/score_variants/scores.tsv") in score
    pretrain = next(c for c in commands if "gbb pretrain" in c)
    assert "configs/pretrain/tiny.yaml --resume data.shards=out/shards" in pretrain
    assert "model.vocab_size=32000 out_dir=out/pretrain" in pretrain  # the tokenizer's vocabulary


def test_finished_steps_are_not_rerun(tmp_path):
    config = placeholder_config(tmp_path)
    time.sleep(0.05)
    for done in ["corpus/contigs/chr21/manifest.json", "corpus/contigs/chr22/manifest.json", "corpus/manifest.json",
                 "tokenizer/dna_bpe.model", "tokenizer/dna_bpe.manifest.json", "shards/contigs/chr21/manifest.json",
                 "shards/contigs/chr22/manifest.json", "shards/manifest.json", "promoter/manifest.json"]:
        path = tmp_path / "out" / done
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n")
        time.sleep(0.05)  # outputs newer than their inputs, in chain order
    jobs, _ = dry_run(tmp_path, "--configfile", str(config))
    assert jobs == {"pretrain": 1, "chromatin_prepare": 1, "finetune": 2, "evaluate": 2,
                    "score_variants": 1, "all": 1}


def test_the_contigs_of_the_fasta_fan_out_once_the_checkpoint_has_listed_them(tmp_path):
    config = placeholder_config(tmp_path, corpus={"passes": 1, "contigs": []})  # every contig of the FASTA
    jobs, commands = dry_run(tmp_path, "--configfile", str(config))
    assert jobs["contig_list"] == 1 and "corpus_contig" not in jobs  # known only once the FASTA is read
    listed = tmp_path / "out" / "corpus" / "contigs.txt"  # what contig_list writes: the FASTA's sequence names
    listed.parent.mkdir(parents=True)
    time.sleep(0.05)
    listed.write_text("chr1\nchr2\nchrUn_gl000220\n")
    jobs, commands = dry_run(tmp_path, "--configfile", str(config))
    assert "contig_list" not in jobs and jobs["corpus_contig"] == jobs["shards_contig"] == 3
    assert ("gbb corpus --merge out/corpus/contigs/chr1 out/corpus/contigs/chr2 out/corpus/contigs/chrUn_gl000220 "
            "--out out/corpus > out/logs/corpus.log 2>&1") in commands
    steps = check_workflow(planned_jobs(dry_run_lines(tmp_path, "--configfile", str(config))), tmp_path)
    assert Counter(s.words for s in steps if s.words)[("shards",)] == 4


def test_unknown_model_size_is_refused(tmp_path):
    proc = snakemake_dry_run(tmp_path, "--config", "model_size=huge")
    assert proc.returncode != 0
    assert "model_size='huge'" in proc.stdout + proc.stderr and "sizes with configs: base, tiny" in proc.stdout + proc.stderr


# --- Every `gbb` command of a dry run, checked against gbb itself without running it -------------
#
# Each command must select a command of `gbb` (pipelines/cli.py:COMMANDS) and pass its argument
# parser (cli.parse, as `gbb` itself parses); config-driven commands must load their config file
# and key.sub=value overrides into their dataclass (pipelines/config.py:load_config, which rejects
# unknown keys). Then the wiring: every path a command reads is written by an earlier command (or
# is an input of the workflow), the rule running it declares that command's rule output as its
# input, and each rule's declared output is the file its command writes last.

GBB = "gbb"  # the `gbb:` of both configs used here
SHELL_SYNTAX = re.compile(r"^(\d*[<>].*|&&|\|\|?|;|&)$")  # redirections and operators end the gbb words
EXPECTED_COMMANDS = Counter({("corpus",): 3, ("tokenizer", "train"): 1, ("shards",): 3, ("pretrain",): 1,
                             ("promoter", "prepare"): 1, ("chromatin", "prepare"): 1, ("finetune", "promoter"): 1,
                             ("finetune", "chromatin"): 1, ("evaluate",): 2, ("score-variants",): 1})


@dataclass
class PlannedJob:
    rule: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    command: str | None = None


@dataclass
class Step:
    """What one planned job's command reads and writes (paths as given on its command line)."""

    job: PlannedJob
    words: tuple[str, ...] | None  # the gbb command; None for a job that runs no gbb command
    reads: list[str]
    writes: list[str]  # files or directories later commands may read
    last: str | None  # the file it writes last (its manifest): what its rule must declare as output


def planned_jobs(lines: list[str]) -> list[PlannedJob]:
    """The jobs of `snakemake -n -p` output: rule, input, output and shell command of each."""
    jobs: list[PlannedJob] = []
    for line in lines:
        if match := re.fullmatch(r"(?:local)?(?:rule|checkpoint) (\w+):", line):
            jobs.append(PlannedJob(match.group(1)))
        elif jobs and (match := re.fullmatch(r"    (input|output): (.*)", line)):
            getattr(jobs[-1], match.group(1) + "s").extend(match.group(2).split(", "))
        elif jobs and line.startswith("Shell command:"):
            command = line.split(":", 1)[1].strip()
            jobs[-1].command = None if command == "None" else command
    return jobs


def gbb_argv(command: str) -> list[str] | None:
    """The words after `gbb` in a shell command (launcher prefix and redirections removed); None without gbb."""
    words = shlex.split(command)
    if GBB not in words:
        return None
    words = words[words.index(GBB) + 1:]
    end = next((i for i, word in enumerate(words) if word != PENDING and SHELL_SYNTAX.match(word)), len(words))
    return words[:end]


def norm(path) -> str:
    return os.path.normpath(str(path))


def check_command(job: PlannedJob, argv: list[str]) -> Step:
    """Parse `gbb ARGV` as gbb would and load its config; return what it reads and writes."""
    where = f"rule {job.rule}: gbb {shlex.join(argv)}"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            _, args = cli.parse(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}\n  rejected by its parser (exit {exc.code}): {stderr.getvalue().strip()}")
    except InputError as err:
        pytest.fail(f"{where}\n  {err}")
    words = args.command

    def checked(function, *arguments):
        try:
            return function(*arguments)
        except InputError as err:
            pytest.fail(f"{where}\n  {err}")

    def step(reads, writes, last):
        return Step(job, words, [norm(p) for p in reads if p is not None], [norm(p) for p in writes],
                    None if last is None else norm(last))

    if words == ("corpus",):  # one contig (or all), or --merge: gathers per-contig corpora
        return step(args.merge or [args.fasta], [args.out], f"{args.out}/manifest.json")
    if words == ("tokenizer", "train"):  # --out PREFIX: PREFIX.model ... PREFIX.manifest.json last
        return step([args.corpus], [f"{args.out}.model"], f"{args.out}.manifest.json")
    if words == ("shards",):
        return step(args.merge or [args.corpus, args.tokenizer], [args.out], f"{args.out}/manifest.json")
    if words == ("pretrain",):
        from pipelines.pretrain import PretrainConfig, resolve_model_config

        config = checked(load_config, PretrainConfig, args.config, args.overrides)
        checked(resolve_model_config, config.model)
        out = config.out_dir  # final/: the checkpoint for fine-tuning
        return step([config.data.shards, config.data.tokenizer], [f"{out}/final"], f"{out}/manifest.json")
    if words[0] == "finetune":
        from pipelines.finetune import FinetuneConfig, check_train
        from pipelines.pretrain import resolve_model_config

        assert args.config, f"{where}\n  name the fine-tuning config of the model size (--config)"
        config = checked(load_config, FinetuneConfig, args.config, args.overrides)
        assert config.task == words[1], f"{where}\n  {args.config} is a config for task {config.task!r}"
        for value, name in ((args.data, "path"), (args.tokenizer, "tokenizer")):  # as pipelines/finetune.py:run
            if value is not None:
                setattr(config.data, name, value)
        config.pretrained = args.pretrained or config.pretrained
        config.out_dir = args.out or config.out_dir
        checked(check_train, config.train)
        if config.model is not None:
            checked(resolve_model_config, config.model)
        assert config.pretrained, f"{where}\n  fine-tunes no pretrained encoder (--pretrained)"
        out = config.out_dir  # best/: the checkpoint for evaluate and score-variants
        return step([config.pretrained, config.data.path, config.data.tokenizer], [f"{out}/best"],
                    f"{out}/manifest.json")
    if words in (("promoter", "prepare"), ("chromatin", "prepare")):
        from pipelines.chromatin import ChromatinPrepareConfig
        from pipelines.promoter import PromoterPrepareConfig

        if args.config is not None:
            cls = PromoterPrepareConfig if words[0] == "promoter" else ChromatinPrepareConfig
            checked(load_config, cls, args.config, args.set)
        if words[0] == "promoter":
            reads = [args.bed, args.chain, args.fasta]
        else:
            reads = [args.deepsea_dir, args.labels, args.peaks_dir, args.bins, args.features, args.fasta]
        return step(reads, [args.out / f"{words[0]}.h5"], args.out / "manifest.json")
    if words == ("evaluate",):
        return step([*args.checkpoint, args.data, args.tokenizer], [args.out], f"{args.out}/manifest.json")
    if words == ("score-variants",):
        missing = [name for name in ("vcf", "fasta", "checkpoint", "tokenizer") if getattr(args, name) is None]
        assert args.merge or not missing, f"{where}\n  lacks --{', --'.join(missing)} (pipelines/score_variants.py:run)"
        return step([args.vcf, args.fasta, args.checkpoint, args.tokenizer, args.bed],
                    [args.out] + ([args.h5] if args.h5 else []), args.out.parent / f"{args.out.name}.manifest.json")
    if words == ("data", "fetch"):
        return step([], [f"{args.dest}/{args.name}"], f"{args.dest}/{args.name}/manifest.json")
    if words == ("data", "verify"):
        return step([f"{args.dest}/{name}" for name in args.names], [], None)
    pytest.fail(f"{where}\n  tests/test_workflow.py has no check for `gbb {' '.join(words)}`: add one")


def check_workflow(jobs: list[PlannedJob], workdir: Path) -> list[Step]:
    """Check every gbb command of the planned jobs and how they connect; return their steps."""
    steps = []
    for job in jobs:
        argv = gbb_argv(job.command) if job.command else None
        if argv is not None:
            steps.append(check_command(job, argv))
        elif job.command:  # gunzip, tar: what they make is an input of later commands
            steps.append(Step(job, None, [], [norm(p) for p in job.outputs], None))

    def writer(path: str, reader: Step) -> Step | None:  # a gather job writes above what it reads: not itself
        found = [(len(w), s) for s in steps if s is not reader for w in s.writes
                 if path == w or path.startswith(w + os.sep)]
        return max(found, key=lambda item: item[0])[1] if found else None

    for step in steps:
        if step.words is None:
            continue
        where = f"rule {step.job.rule}: {step.job.command}"
        if step.last is not None:
            assert step.last in map(norm, step.job.outputs), (
                f"{where}\n  declares output {step.job.outputs}, but the command writes {step.last} last")
        for path in step.reads:
            if path == PENDING:  # decided by a checkpoint: the rule must wait for it as well
                assert PENDING in step.job.inputs, f"{where}\n  reads {PENDING} but its rule waits for nothing"
                continue
            source = writer(path, step)
            if source is None:
                assert (workdir / path).exists(), (
                    f"{where}\n  reads {path}, which no command of the workflow writes and which is no input")
            else:
                assert set(source.job.outputs) & set(step.job.inputs), (
                    f"{where}\n  reads {path} from rule {source.job.rule} but has none of its outputs "
                    f"{source.job.outputs} as input")
    return steps


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_every_gbb_command_parses_and_reads_what_an_earlier_one_writes(tmp_path, size):
    config = placeholder_config(
        tmp_path, model_size=size,
        pretrain={"launcher": "torchrun --nproc_per_node 2 --no-python", "overrides": ["train.log_every=5"]},
        finetune={"launcher": "", "overrides": ["train.eval_every=5", "data.num_workers=0"]},
        variants={"task": "chromatin" if size == "base" else "promoter", "region": "chr22", "h5": size == "base"})
    jobs = planned_jobs(dry_run_lines(tmp_path, "--configfile", str(config)))
    steps = check_workflow(jobs, tmp_path)
    assert Counter(s.words for s in steps if s.words) == EXPECTED_COMMANDS  # every rule of the `all` chain, once per task
    finetune = {s.words[1]: s.job.command for s in steps if s.words[0] == "finetune"}
    for task, command in finetune.items():
        name = f"{task}.yaml" if size == "base" else f"{size}_{task}.yaml"
        assert f"--config {SNAKEFILE.parents[1]}/configs/finetune/{name} " in command
    pretrain = next(s.job.command for s in steps if s.words == ("pretrain",))
    assert pretrain.startswith("torchrun --nproc_per_node 2 --no-python gbb pretrain ")
    assert f"configs/pretrain/{size}.yaml" in pretrain
    score = next(s for s in steps if s.words == ("score-variants",))
    task = "chromatin" if size == "base" else "promoter"
    assert f"--checkpoint out/finetune_{task}/best" in score.job.command
    assert f"--width {1000 if task == 'chromatin' else 8000} " in score.job.command  # the task's training window
    assert ("out/score_variants/scores.h5" in score.writes) == (size == "base")


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("planned")
    return workdir, planned_jobs(dry_run_lines(workdir, "--configfile", str(placeholder_config(workdir))))


# The mistakes an earlier Snakefile made (and a few more): each must fail the checks above.
MISTAKES = {
    "prepare config as fine-tuning config": ("finetune", "configs/finetune/tiny_promoter.yaml",
                                             "configs/tasks/promoter.yaml", "unknown key"),
    "model.pretrained override": ("finetune", "--pretrained out/pretrain/final",
                                  "model.pretrained=out/pretrain/final", "not a section"),
    "data.dir override": ("finetune", "--data out/promoter/promoter.h5", "data.dir=out/promoter", "unknown key"),
    "pretrain final/ for a fine-tuned checkpoint": ("evaluate", "finetune_promoter/best", "finetune_promoter/final",
                                                    "which no command of the workflow writes"),
    "data directory for the HDF5": ("evaluate", "--data out/promoter/promoter.h5", "--data out/promoter",
                                    "which no command of the workflow writes"),
    "evaluate without tokenizer": ("evaluate", "--tokenizer out/tokenizer/dna_bpe.model", "",
                                   "the following arguments are required: --tokenizer"),
    "score-variants without tokenizer": ("score_variants", "--tokenizer out/tokenizer/dna_bpe.model", "",
                                         "lacks --tokenizer"),
    "unknown option": ("corpus_contig", "--passes 1", "--npasses 1", "unrecognized arguments"),
    "gather of a part no job writes": ("corpus", "out/corpus/contigs/chr22", "out/corpus/contig/chr22",
                                       "which no command of the workflow writes"),
    "shards of the gathered corpus per contig": ("shards_contig", "--corpus out/corpus/contigs/chr21",
                                                 "--corpus out/corpus", "has none of its outputs"),
    "unknown command": ("shards", "gbb shards", "gbb shard", "unknown command"),
    "pretrain override of a missing key": ("pretrain", "out_dir=out/pretrain", "output_dir=out/pretrain",
                                           "unknown key"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_the_checks_catch_commands_that_gbb_would_refuse_or_misread(planned, mistake):
    workdir, jobs = planned
    check_workflow(jobs, workdir)  # the workflow as it is passes
    rule, old, new, message = MISTAKES[mistake]
    job = next(j for j in jobs if j.rule == rule and old in j.command)
    broken = [PlannedJob(j.rule, j.inputs, j.outputs, j.command.replace(old, new)) if j is job else j for j in jobs]
    with pytest.raises((pytest.fail.Exception, AssertionError), match=re.escape(message)):
        check_workflow(broken, workdir)


def test_the_checks_catch_a_rule_output_the_command_does_not_write(planned):
    workdir, jobs = planned
    broken = [PlannedJob(j.rule, j.inputs, ["out/score_variants/manifest.json"], j.command)
              if j.rule == "score_variants" else j for j in jobs]
    with pytest.raises(AssertionError, match="writes out/score_variants/scores.tsv.manifest.json last"):
        check_workflow(broken, workdir)
