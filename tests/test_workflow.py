"""workflows/Snakefile: a dry run (`snakemake -n`) plans the whole real-data chain.

Snakemake is a project dependency (the `workflow` extra): if it is missing these tests fail.
"""
import subprocess
import sys
import time
from pathlib import Path

import yaml

SNAKEFILE = Path(__file__).resolve().parents[1] / "workflows" / "Snakefile"
CHAIN = ["corpus", "tokenizer", "shards", "pretrain", "promoter_prepare", "chromatin_prepare",
         "finetune", "evaluate", "score_variants", "all"]


def dry_run(workdir: Path, *extra: str) -> tuple[dict[str, int], list[str]]:
    """Run `snakemake -n -p`; return the planned jobs per rule and the shell commands."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "-s", str(SNAKEFILE),
                           "--directory", str(workdir), *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
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
    assert jobs == {**{r: 1 for r in fetched + ["prepare_fasta", "unpack_deepsea", "verify_data"] + CHAIN},
                    "finetune": 2, "evaluate": 2}
    assert "gbb data fetch hg19 --dest data --quiet > runs/workflow/logs/fetch_hg19.log 2>&1" in commands
    assert any(c.startswith("gbb corpus --fasta data/hg19/hg19.fa --out runs/workflow/corpus") for c in commands)


def placeholder_config(tmp_path: Path) -> Path:
    inputs = tmp_path / "inputs"
    (inputs / "deepsea").mkdir(parents=True)
    for name in ["toy.fa", "tss.bed", "toy.chain", "toy.vcf.gz"]:
        (inputs / name).write_text("placeholder\n")
    config = {"gbb": "gbb", "out_dir": "out", "fasta": str(inputs / "toy.fa"),
              "promoter_bed": str(inputs / "tss.bed"), "chain": str(inputs / "toy.chain"),
              "deepsea_dir": str(inputs / "deepsea"), "vcf": str(inputs / "toy.vcf.gz"),
              "model_size": "tiny", "corpus": {"passes": 1, "contigs": ["chr21", "chr22"]},
              "variants": {"task": "promoter", "region": "chr22"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_own_inputs_skip_downloads_and_wire_every_step(tmp_path):
    config = placeholder_config(tmp_path)
    jobs, commands = dry_run(tmp_path, "--configfile", str(config))
    assert jobs == {**{r: 1 for r in CHAIN}, "finetune": 2, "evaluate": 2}
    fasta = tmp_path / "inputs" / "toy.fa"
    assert (f"gbb corpus --fasta {fasta} --out out/corpus --passes 1 --contigs chr21 chr22 --seed 0 "
            "> out/logs/corpus.log 2>&1") in commands
    score = next(c for c in commands if c.startswith("gbb score-variants"))
    assert "--checkpoint out/finetune_promoter/final --region chr22" in score
    pretrain = next(c for c in commands if "gbb pretrain" in c)
    assert "configs/pretrain/tiny.yaml data.shards=out/shards" in pretrain
    assert "model.vocab_size=32000 out_dir=out/pretrain" in pretrain  # the tokenizer's vocabulary


def test_finished_steps_are_not_rerun(tmp_path):
    config = placeholder_config(tmp_path)
    time.sleep(0.05)
    for done in ["corpus/manifest.json", "tokenizer/dna_bpe.model", "shards/manifest.json",
                 "promoter/manifest.json"]:
        path = tmp_path / "out" / done
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n")
        time.sleep(0.05)  # outputs newer than their inputs, in chain order
    jobs, _ = dry_run(tmp_path, "--configfile", str(config))
    assert jobs == {"pretrain": 1, "chromatin_prepare": 1, "finetune": 2, "evaluate": 2,
                    "score_variants": 1, "all": 1}
