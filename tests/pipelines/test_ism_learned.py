"""`gbb ism` lights up a planted motif on a chromatin model that has learned it.

The model is the demo's kind (a BigBird classifier over a DNA BPE of the simulated genome) made
small enough to learn in seconds: 2 layers x 64, 100 bp windows, two TF features (TF01, TF02)
whose label is "the feature's motif lies in the window", trained for 300 steps of 32 windows of the
simulated genome in which the motif is planted at a random offset, on a random strand, in two
windows out of three. It learns TF02 reliably (checked for seeds 0-3; about 15 s on one core).
The ISM regions are TF02 motif occurrences the simulator planted in its genome, found with the
simulator's own motif scan, with 12 bp on each side.
"""
import json

import h5py
import numpy as np
import pytest
import torch

from genomics_bigbird.genome import ReferenceGenome, reverse_complement
from genomics_bigbird.genome.simulate_signal import scan_motifs
from genomics_bigbird.model import EncoderConfig, build_classifier, save_checkpoint
from genomics_bigbird.model.inference import pad_rows
from genomics_bigbird.tokenizer import DNATokenizer
from genomics_bigbird.train.losses import bce_with_pos_weight
from pipelines import cli

FEATURES = ["TF01", "TF02"]
WIDTH, STEPS, BATCH, SEED = 100, 300, 32, 0
FLANK = 12


def training_batch(rng, seqs, motifs, tokenizer):
    """BATCH random windows; in two of three, one feature's motif is written at a random offset and strand."""
    contigs = list(seqs)
    windows, labels = [], []
    for _ in range(BATCH):
        contig = contigs[rng.integers(len(contigs))]
        start = int(rng.integers(0, len(seqs[contig]) - WIDTH))
        window = seqs[contig][start:start + WIDTH]
        planted = int(rng.integers(0, 3))
        if planted < len(motifs):
            motif = motifs[planted] if rng.random() < 0.5 else reverse_complement(motifs[planted])
            at = int(rng.integers(0, WIDTH - len(motif) + 1))
            window = window[:at] + motif + window[at + len(motif):]
        windows.append(window)
        labels.append([float(m in window or reverse_complement(m) in window) for m in motifs])
    rows = [[tokenizer.cls_id, *ids, tokenizer.sep_id] for ids in tokenizer.encode_batch(windows)]
    input_ids, attention_mask = pad_rows(rows, tokenizer.pad_id, -(-max(map(len, rows)) // 16) * 16)
    return input_ids, attention_mask, torch.tensor(labels)


@pytest.fixture(scope="module")
def learned(sim_genome, tmp_path_factory):
    """A checkpoint of a small chromatin model that has learned TF01 and TF02 (see the module docstring)."""
    root = tmp_path_factory.mktemp("learned")
    motifs = [json.loads(sim_genome.summary.read_text())["motifs"][name][0] for name in FEATURES]
    with ReferenceGenome(sim_genome.fasta) as genome:
        seqs = {c: genome.fetch(c, 0, n) for c, n in genome.contigs.items() if c != "chrM"}
    tokenizer = DNATokenizer.train([seqs["chr1"][i:i + 500] for i in range(0, 100_000, 500)], vocab_size=512,
                                   model_prefix=root / "bpe", seed=SEED)
    config = EncoderConfig(vocab_size=len(tokenizer), hidden_size=64, num_layers=2, num_heads=4,
                           intermediate_size=128, max_position=256, attention="bigbird", block_size=16,
                           num_global_blocks=1, window_blocks=3, num_random_blocks=1, attention_backend="gather",
                           dropout=0.0)
    torch.manual_seed(SEED)
    model = build_classifier(config, len(FEATURES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    rng = np.random.default_rng(SEED)
    for _ in range(STEPS):
        input_ids, attention_mask, labels = training_batch(rng, seqs, motifs, tokenizer)
        loss = bce_with_pos_weight(model(input_ids, attention_mask), labels, pos_weight=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoint = save_checkpoint(root / "ckpt", model.eval(), model_config=config.to_dict(), task="chromatin",
                                 tokenizer_sha256=tokenizer.sha256,
                                 extra={"feature_names": FEATURES, "window": WIDTH})
    hits = scan_motifs(seqs["chr1"].upper(), [motifs[1]])[motifs[1]]
    return {"root": root, "checkpoint": checkpoint, "tokenizer": tokenizer.path, "motif": motifs[1],
            "starts": sorted(int(s) for strand in hits for s in strand)}


def test_the_highest_mean_abs_diff_lies_inside_a_planted_tf02_motif(learned, sim_genome):
    length = len(learned["motif"])
    for k, start in enumerate(learned["starts"][:3]):
        out = learned["root"] / f"tf02_{k}.h5"
        region = f"chr1:{start + 1 - FLANK}-{start + length + FLANK}"
        assert cli.main(["ism", "--fasta", str(sim_genome.fasta), "--region", region, "--checkpoint",
                         str(learned["checkpoint"]), "--tokenizer", str(learned["tokenizer"]), "--out", str(out),
                         "--features", "TF02", "--batch-size", "32", "--device", "cpu", "--quiet"]) == 0
        with h5py.File(out) as h5:
            importance = h5["importance"][:, 0]
            assert h5.attrs["sequence"][FLANK:FLANK + length] in (learned["motif"], reverse_complement(learned["motif"]))
        assert FLANK <= int(np.argmax(importance)) < FLANK + length, (region, importance.round(3).tolist())
