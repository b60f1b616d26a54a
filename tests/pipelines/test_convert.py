"""`gbb convert`: a tiny random HF BigBird (built here, no network) through convert -> finetune -> evaluate -> score."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import transformers  # the [hf] extra, which ./run test installs

from genomics_bigbird.data.labeled import LabeledWriter
from genomics_bigbird.evaluate.classifier import load_classifier
from genomics_bigbird.model import load_checkpoint
from genomics_bigbird.tokenizer import DNATokenizer
from pipelines import cli


WINDOW = 120
rng = np.random.default_rng(3)
CHR1 = "".join(rng.choice(list("ACGT"), 600))


def random_dna(generator, n, length, gc=0.5):
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return ["".join(generator.choice(list("ACGT"), length, p=p)) for _ in range(n)]


def gena_like_tokenizer(path):
    """A small BPE in GENA-LM's format: [UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4, N runs -> '-'."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Strip(), normalizers.Replace(Regex("N{10,}"), "-")])
    tokenizer.pre_tokenizer = pre_tokenizers.Split("-", behavior="isolated")
    trainer = trainers.BpeTrainer(vocab_size=64, show_progress=False,
                                  special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "-"])
    corpus = random_dna(np.random.default_rng(0), 200, 200) + [CHR1[i:i + 200] for i in range(0, 400, 20)]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    tokenizer.save(str(path))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """What `huggingface-cli download` leaves: config.json, model.safetensors, tokenizer.json."""
    directory = tmp_path_factory.mktemp("hub") / "tiny-dna-bigbird"
    directory.mkdir()
    gena_like_tokenizer(directory / "tokenizer.json")
    vocab = DNATokenizer.load(directory / "tokenizer.json").__len__()
    config = transformers.BigBirdConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=128, block_size=16,
                                        num_random_blocks=1, pad_token_id=3, bos_token_id=1, eos_token_id=2,
                                        sep_token_id=2, architectures=["BigBirdForMaskedLM"])
    torch.manual_seed(0)
    transformers.BigBirdForMaskedLM(config).save_pretrained(directory)
    return directory


def write_chromatin(path):
    generator = np.random.default_rng(1)
    with LabeledWriter(path, window=WINDOW, feature_names=["CTCF", "DNase"], feature_groups=["TF", "DHS"],
                       task="chromatin", source="test", seed=1) as out:
        for split, n in {"train": 16, "valid": 8, "test": 8}.items():
            gc = generator.uniform(0.3, 0.7, n)
            sequences = [random_dna(generator, 1, WINDOW, g)[0] for g in gc]
            out.append(sequences, np.stack([gc > 0.5, gc < 0.45], axis=1).astype(np.uint8), [split] * n)
    return path


def test_convert_finetune_evaluate_score_and_export(tmp_path, hf_dir):
    ckpt = tmp_path / "gena"
    assert cli.main(["convert", "from-hf", str(hf_dir), "--out", str(ckpt), "--quiet"]) == 0
    state, meta = load_checkpoint(ckpt)
    tokenizer_path = ckpt / "tokenizer.json"
    assert meta["task"] == "mlm" and meta["model_config"]["norm_position"] == "post"
    assert meta["model_config"]["sparse_layout"] == "random" and meta["model_config"]["pad_id"] == 3
    assert meta["tokenizer_sha256"] == DNATokenizer.load(hf_dir / "tokenizer.json").sha256
    assert tokenizer_path.read_bytes() == (hf_dir / "tokenizer.json").read_bytes()
    assert json.loads((tmp_path / "gena.manifest.json").read_text())["outputs"]["task"] == "mlm"

    data = write_chromatin(tmp_path / "chromatin.h5")
    ft = tmp_path / "ft"
    assert cli.main(["finetune", "chromatin", "--data", str(data), "--tokenizer", str(tokenizer_path),
                     "--pretrained", str(ckpt), "--out", str(ft), "--config", "configs/finetune/tiny_chromatin.yaml",
                     "--quiet", "train.epochs=null", "train.steps=2", "train.global_batch_size=8",
                     "train.micro_batch_size=8", "train.zero_stage=0", "train.eval_every=2",
                     "data.max_length=null"]) == 0
    model, best_meta = load_classifier(ft / "best")
    assert best_meta["model_config"]["classifier_head"] == "hf"            # HF's head on the HF encoder
    # the unused tanh pooler is carried along (weight decay alone moves it)
    assert torch.allclose(state["encoder.pooler.weight"], model.encoder.pooler.weight, atol=1e-3)

    ev = tmp_path / "ev"
    assert cli.main(["evaluate", "--checkpoint", str(ft / "best"), "--data", str(data), "--tokenizer",
                     str(tokenizer_path), "--out", str(ev), "--quiet"]) == 0
    assert (ev / "manifest.json").is_file()

    fasta, vcf = tmp_path / "ref.fa", tmp_path / "calls.vcf"
    fasta.write_text(f">chr1\n{CHR1}\n")
    alt = "A" if CHR1[299] != "A" else "C"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=600>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chr1\t300\tsnv\t{CHR1[299]}\t{alt}\t.\tPASS\t.\n")
    scores = tmp_path / "scores.tsv"
    assert cli.main(["score-variants", "--vcf", str(vcf), "--fasta", str(fasta), "--checkpoint", str(ft / "best"),
                     "--tokenizer", str(tokenizer_path), "--out", str(scores), "--width", str(WINDOW),
                     "--device", "cpu", "--quiet"]) == 0
    table = pd.read_csv(scores, sep="\t")
    assert list(table["status"]) == ["ok"]

    # ... and back to the hub's format: transformers loads model and tokenizer and agrees with us
    exported = tmp_path / "hf_out"
    assert cli.main(["convert", "to-hf", str(ft / "best"), "--out", str(exported), "--quiet"]) == 0
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(exported).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    window = CHR1[100:100 + WINDOW]
    ours = DNATokenizer.load(tokenizer_path)
    ids = [ours.cls_id, *ours.encode(window), ours.sep_id]
    assert hf_tokenizer(window)["input_ids"] == ids
    assert hf_model.config.id2label == {0: "CTCF", 1: "DNase"}
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        expected = model(input_ids, torch.ones_like(input_ids, dtype=torch.bool))
        # our imported model draws its random blocks; at this length (< (5 + 2r) blocks) HF runs full attention,
        # and so does ours (every block is global or in a window), so the two agree
        assert (hf_model(input_ids=input_ids).logits - expected).abs().max() < 1e-4


def test_errors_name_the_file(tmp_path, hf_dir, capsys):
    assert cli.main(["convert", "from-hf", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "missing/tokenizer.json: not found" in capsys.readouterr().err
    assert cli.main(["convert", "from-hf", str(hf_dir), "--head", "classification", "--out", str(tmp_path / "x")]) == 2
    assert "config.json: architecture BigBirdForMaskedLM has no classification head" in capsys.readouterr().err
    other = tmp_path / "other_tokenizer"
    shutil.copytree(hf_dir, other)
    from tokenizers import Tokenizer, models

    Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "A"])},
                         merges=[], unk_token="[UNK]")).save(str(other / "tokenizer.json"))
    assert cli.main(["convert", "from-hf", str(other), "--out", str(tmp_path / "x")]) == 2
    assert "tokenizer.json: the tokenizer has 6 tokens but the model 64" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_our_pretraining_checkpoint_exports_with_its_sentencepiece_tokenizer(tmp_path):
    """A model trained here in HF's layout (configs/model/hf_base.yaml, shrunk) goes to the hub's format."""
    from genomics_bigbird.model import EncoderConfig, build_pretraining_model, save_checkpoint
    from pipelines.pretrain import resolve_model_config

    tokenizer = DNATokenizer.train(random_dna(np.random.default_rng(2), 200, 200), vocab_size=48,
                                   model_prefix=tmp_path / "tok" / "dna_bpe", seed=0)
    config = resolve_model_config({"config": "configs/model/hf_base.yaml", "vocab_size": len(tokenizer),
                                   "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
                                   "max_position": 256, "block_size": 16, "num_random_blocks": 1})
    assert isinstance(config, EncoderConfig) and config.norm_position == "post"
    torch.manual_seed(0)
    model = build_pretraining_model(config).eval()
    ckpt = save_checkpoint(tmp_path / "final", model, model_config=config.to_dict(), task="pretraining",
                           tokenizer_sha256=tokenizer.sha256, extra={"tokenizer": str(tokenizer.path)})
    exported = tmp_path / "hf"
    assert cli.main(["convert", "to-hf", str(ckpt), "--out", str(exported), "--quiet"]) == 0
    hf_model = transformers.AutoModelForMaskedLM.from_pretrained(exported).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    window = "acgt" + CHR1[:80] + "NNRY"                          # raw: lower case and IUPAC codes too
    ids = [tokenizer.cls_id, *tokenizer.encode(window), tokenizer.sep_id]
    assert hf_tokenizer(window)["input_ids"] == ids
    input_ids = torch.tensor([ids])
    everywhere = torch.ones_like(input_ids, dtype=torch.bool)
    with torch.no_grad():      # short input: HF runs full attention and ours covers every block
        ours, _ = model(input_ids, everywhere, torch.zeros_like(input_ids), everywhere)
        assert (hf_model(input_ids=input_ids).logits[0] - ours).abs().max() < 1e-4
