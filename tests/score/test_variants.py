"""Variant effect scores from a toy model whose answers are computed by hand from the window strings."""
import math

import numpy as np
import pytest
import torch

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.variants import VariantWindows
from genomics_bigbird.score import logit, predict_windows, score_variants

PAIR = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


class CharTokenizer:
    """One token per base, the DNATokenizer interface the scorer uses."""

    pad_id, unk_id, cls_id, sep_id, mask_id = 0, 1, 2, 3, 4
    ids = {"A": 5, "C": 6, "G": 7, "T": 8, "N": 9}

    def encode_batch(self, sequences):
        return [[self.ids[b] for b in s] for s in sequences]


class BaseCounter(torch.nn.Module):
    """Feature 0: 0.5 #A - 0.25 #T (strand-specific); feature 1: scale * (#G + #C - 2) (the same on both strands)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, input_ids, attention_mask):
        def count(token):
            return ((input_ids == token) & attention_mask).sum(dim=1).float()
        return torch.stack([0.5 * count(5) - 0.25 * count(8), self.scale * (count(7) + count(6) - 2)], dim=1)


def by_hand(seq: str, scale: float = 1.0) -> np.ndarray:
    """RC-ensembled probabilities of BaseCounter, from base counts of the window and its reverse complement."""
    rc = "".join(PAIR[b] for b in reversed(seq))

    def probs(s):
        logits = [0.5 * s.count("A") - 0.25 * s.count("T"), scale * (s.count("G") + s.count("C") - 2)]
        return np.array([1 / (1 + math.exp(-x)) for x in logits])
    return (probs(seq) + probs(rc)) / 2


def variant(ref_seq, alt_seq, status="ok", index=0, allele=1):
    return VariantWindows("chr1", 10, f"v{index}", "A", "C", allele, status, ref_seq, alt_seq, 0, index)


def test_logit_is_log_odds_and_finite_when_saturated():
    assert logit(np.array([0.5, 0.8]))[1] == pytest.approx(math.log(4.0))
    assert logit(np.array([0.5]))[0] == 0.0
    saturated = logit(np.array([0.0, 1.0]))
    assert np.isfinite(saturated).all() and saturated[1] == pytest.approx(math.log((1 - 1e-7) / 1e-7))


def test_predict_windows_is_mean_of_both_strands_and_restores_mode():
    model = BaseCounter().train()
    got = predict_windows(model, CharTokenizer(), ["AAT", "GGGCA", "AAAAAT"], batch_size=2)
    for row, seq in zip(got, ["AAT", "GGGCA", "AAAAAT"]):
        np.testing.assert_allclose(row, by_hand(seq), rtol=1e-6)
    # AAT: forward 0.75 and reverse complement ATT 0.0 -> mean of sigmoids, not sigmoid of the mean
    assert got[0, 0] == pytest.approx((1 / (1 + math.exp(-0.75)) + 0.5) / 2)
    assert model.training


def test_scores_per_feature_and_nan_rows_for_unscored():
    windows = [variant("AACGT", "TACGT", index=0), variant("", "", "ref_mismatch", index=1),
               variant("GGGCA", "GGACA", index=2), variant("", "", "symbolic_alt", index=3),
               variant("CCTTN", "CCTTNNN", status="padded", index=4)]
    batches = list(score_variants(BaseCounter(), CharTokenizer(), windows, num_features=2, batch_size=2))
    assert [v.record_index for b in batches for v in b.variants] == [0, 1, 2, 3, 4]  # input order
    assert [len(b.variants) for b in batches] == [3, 2]  # groups close at batch_size scored variants
    ref = np.concatenate([b.ref for b in batches])
    alt = np.concatenate([b.alt for b in batches])
    diff = np.concatenate([b.diff for b in batches])
    lod = np.concatenate([b.log_odds_diff for b in batches])
    for i, (r, a) in {0: ("AACGT", "TACGT"), 2: ("GGGCA", "GGACA"), 4: ("CCTTN", "CCTTNNN")}.items():
        np.testing.assert_allclose(ref[i], by_hand(r), rtol=1e-6)
        np.testing.assert_allclose(alt[i], by_hand(a), rtol=1e-6)
        np.testing.assert_allclose(diff[i], by_hand(a) - by_hand(r), atol=1e-7)
        np.testing.assert_allclose(lod[i], logit(by_hand(a)) - logit(by_hand(r)), atol=1e-6)
    # AACGT -> TACGT keeps the G+C count: no change in feature 1
    assert diff[0, 1] == pytest.approx(0.0, abs=1e-7)
    for i in (1, 3):
        assert np.isnan(ref[i]).all() and np.isnan(alt[i]).all() and np.isnan(lod[i]).all()
    summary = batches[0].summaries()
    expected = np.abs(by_hand("GGACA") - by_hand("GGGCA"))
    assert summary["max_abs_diff_feature"].tolist() == [0, -1, int(np.argmax(expected))]
    assert summary["max_abs_diff"][2] == pytest.approx(expected.max(), rel=1e-6)
    assert math.isnan(summary["max_abs_diff"][1]) and math.isnan(summary["max_abs_log_odds_diff"][1])


def test_saturated_predictions_give_finite_log_odds():
    model = BaseCounter(scale=100.0)  # feature 1: logit +200 for GGGGA, -200 for AAAAT, on both strands
    batch = next(score_variants(model, CharTokenizer(), [variant("GGGGA", "AAAAT")], num_features=2))
    assert batch.ref[0, 1] == 1.0 and batch.alt[0, 1] == 0.0
    assert batch.diff[0, 1] == -1.0
    assert batch.log_odds_diff[0, 1] == pytest.approx(-2 * math.log((1 - 1e-7) / 1e-7))
    assert np.isfinite(batch.log_odds_diff).all()


def test_window_longer_than_model_positions_is_an_input_error():
    with pytest.raises(InputError, match="more than the model's 6 positions"):
        list(score_variants(BaseCounter(), CharTokenizer(), [variant("ACGTACG", "ACGTACG")], num_features=2,
                            max_tokens=6))


def test_many_unscored_variants_do_not_accumulate():
    windows = [variant("", "", "unknown_contig", index=i) for i in range(50)]
    batches = list(score_variants(BaseCounter(), CharTokenizer(), windows, num_features=2, batch_size=2))
    assert max(len(b.variants) for b in batches) == 16 and sum(len(b.variants) for b in batches) == 50


class LengthSensitive(torch.nn.Module):
    """logit = (#A) - padded length / 8: like BigBird's random blocks, its answer depends on the padding."""

    def forward(self, input_ids, attention_mask):
        a = ((input_ids == 5) & attention_mask).sum(dim=1).float()
        return (a - input_ids.shape[1] / 8.0)[:, None]


def test_a_window_is_padded_by_its_own_length_never_by_its_batch_mates():
    sequences = ["AAT", "AAAAAAAAAAT", "TTA"]  # 5, 13 and 5 tokens with [CLS]/[SEP] -> padded to 8, 16, 8
    together = predict_windows(LengthSensitive(), CharTokenizer(), sequences, batch_size=8, length_multiple=8)
    for row, seq in zip(together, sequences):
        padded = 8 if len(seq) + 2 <= 8 else 16
        expected = np.mean([1 / (1 + math.exp(-(s.count("A") - padded / 8))) for s in (seq, seq.translate(
            str.maketrans("ACGT", "TGCA"))[::-1])])
        assert row[0] == pytest.approx(expected, rel=1e-6)
        alone = predict_windows(LengthSensitive(), CharTokenizer(), [seq], length_multiple=8)
        assert alone[0, 0] == pytest.approx(row[0], rel=1e-6)


def test_a_bigbird_score_is_the_same_in_any_batch_and_alone(tiny_bigbird):
    rng = np.random.default_rng(1)
    sequences = ["".join(rng.choice(list("ACGT"), n)) for n in (45, 90, 12, 60, 44)]  # 47 to 92 tokens
    alone = np.concatenate([predict_windows(tiny_bigbird, CharTokenizer(), [s], length_multiple=8) for s in sequences])
    for batch_size in (1, 2, 16):
        together = predict_windows(tiny_bigbird, CharTokenizer(), sequences, batch_size=batch_size, length_multiple=8)
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


class RunTokenizer(CharTokenizer):
    """One token per base, except that a run of four A (or four T) is one token: indels change the token count."""

    def encode_batch(self, sequences):
        out = []
        for s in sequences:
            ids, i = [], 0
            while i < len(s):
                if s[i:i + 4] in ("AAAA", "TTTT"):
                    ids.append(10 if s[i] == "A" else 11)
                    i += 4
                else:
                    ids.append(self.ids[s[i]])
                    i += 1
            out.append(ids)
        return out


def alone_at(model, tokenizer, seq, length):
    """The model on one window padded to `length` tokens, as a probability vector."""
    from genomics_bigbird.model.inference import pad_rows

    input_ids, attention_mask = pad_rows([[tokenizer.cls_id, *tokenizer.encode_batch([seq])[0], tokenizer.sep_id]],
                                         tokenizer.pad_id, length)
    with torch.no_grad():
        return torch.sigmoid(model.eval()(input_ids, attention_mask)).double().numpy()[0]


@pytest.fixture
def insertion(tmp_path):
    """An insertion of 12 A: ref windows are 42 tokens (6 blocks of 8), alt windows 33 (5 blocks)."""
    from genomics_bigbird.genome import ReferenceGenome
    from genomics_bigbird.genome.variants import VariantSource

    rng = np.random.default_rng(5)
    contig = "".join(rng.choice(list("CG"), 120)) + "".join(rng.choice(list("ACGT"), 60)).replace("AAAA", "AACA")
    contig = contig.replace("TTTT", "TTGT")
    (tmp_path / "g.fa").write_text(f">chr1\n{contig}\n")
    (tmp_path / "ins.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=180>\n"
                                      "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                      f"chr1\t60\tins\t{contig[59]}\t{contig[59]}{'A' * 12}\t.\tPASS\t.\n")
    genome = ReferenceGenome(tmp_path / "g.fa")
    yield VariantSource(tmp_path / "ins.vcf", genome, 40)
    genome.close()


def test_a_variants_four_windows_share_one_padded_length(tiny_bigbird, insertion):
    tokenizer = RunTokenizer()
    (variant,) = list(insertion)
    counts = [len(tokenizer.encode_batch([s])[0]) + 2 for s in (variant.ref_seq, variant.alt_seq)]
    assert counts == [42, 33]  # 6 and 5 blocks of 8 tokens: on their own, two random-block layouts
    rc = [seq.translate(str.maketrans("ACGT", "TGCA"))[::-1] for seq in (variant.ref_seq, variant.alt_seq)]
    ref = (alone_at(tiny_bigbird, tokenizer, variant.ref_seq, 48) + alone_at(tiny_bigbird, tokenizer, rc[0], 48)) / 2
    alt = (alone_at(tiny_bigbird, tokenizer, variant.alt_seq, 48) + alone_at(tiny_bigbird, tokenizer, rc[1], 48)) / 2
    for windows in (insertion, [variant]):  # a source cut into groups, and a plain list of windows
        (batch,) = score_variants(tiny_bigbird, tokenizer, windows, num_features=3, batch_size=3, length_multiple=8)
        np.testing.assert_allclose(batch.ref[0], ref, rtol=0, atol=1e-6)
        np.testing.assert_allclose(batch.alt[0], alt, rtol=0, atol=1e-6)
    own_length = (alone_at(tiny_bigbird, tokenizer, variant.alt_seq, 40) +
                  alone_at(tiny_bigbird, tokenizer, rc[1], 40)) / 2
    assert np.abs(own_length - alt).max() > 1e-4  # what the alt score would be under its own layout


def test_scores_are_identical_with_any_number_of_workers(tiny_bigbird, tmp_path):
    from genomics_bigbird.genome import ReferenceGenome
    from genomics_bigbird.genome.variants import VariantSource

    rng = np.random.default_rng(2)
    contig = "".join(rng.choice(list("ACGT"), 600))
    (tmp_path / "g.fa").write_text(f">chr1\n{contig}\n")
    body = [f"chr1\t{p}\tv{p}\t{contig[p - 1]}\t{'ACGT'[('ACGT'.index(contig[p - 1]) + 1) % 4]}"
            f"{'TA' * (p % 3)}\t.\tPASS\t." for p in range(30, 570, 11)]
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                    + "\n".join(body) + "\n")
    with ReferenceGenome(tmp_path / "g.fa") as genome:
        source = VariantSource(tmp_path / "v.vcf", genome, 50)
        runs = {workers: list(score_variants(tiny_bigbird, RunTokenizer(), source, num_features=3, batch_size=4,
                                             length_multiple=8, workers=workers)) for workers in (0, 1, 2)}
    for workers, batches in runs.items():
        assert [v.id for b in batches for v in b.variants] == [line.split("\t")[2] for line in body]
        for name in ("ref", "alt"):
            got = np.concatenate([getattr(b, name) for b in batches])
            assert np.array_equal(got, np.concatenate([getattr(b, name) for b in runs[0]])), (workers, name)
