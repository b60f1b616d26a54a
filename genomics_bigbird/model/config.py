"""The encoder's configuration: one dataclass, validated once, with every derived size computed here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from genomics_bigbird.model.attention import ATTENTION_KINDS, SPARSE_LAYOUTS
from genomics_bigbird.model.attention.bigbird import BACKENDS as ATTENTION_BACKENDS
from genomics_bigbird.model.attention.patterns import GLOBAL_PLACEMENTS

NORM_POSITIONS = ("pre", "post")
ACTIVATIONS = ("gelu", "gelu_new")
CLASSIFIER_HEADS = ("pooled", "hf")


@dataclass
class EncoderConfig:
    """Sizes and attention pattern of a BigBird/Combiner encoder (defaults: BigBird base, Table 21).

    The last group of fields selects the layout of Hugging Face's BERT/BigBird models, so their
    weights run here unchanged (`genomics_bigbird.model.hf`); the defaults are this project's own
    pre-LN encoder. HF BigBird is: norm_position="post", embedding_layer_norm=True,
    activation="gelu_new", classifier_head="hf", global_placement="ends" with 2 global blocks.
    """

    vocab_size: int = 32000
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position: int = 4096
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention: str = "bigbird"
    block_size: int = 64
    num_global_blocks: int = 2
    global_placement: str = "first"
    window_blocks: int = 3
    num_random_blocks: int = 3
    combiner_span: int | None = None  # None: a power of two near sqrt(length), chosen per input
    attention_backend: str = "auto"
    attention_seed: int = 0
    pad_id: int = 0
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    norm_position: str = "pre"          # "pre": LayerNorm before each sub-layer + final norm; "post": BERT's
    embedding_layer_norm: bool = False  # a LayerNorm after the summed embeddings (BERT/HF BigBird)
    activation: str = "gelu"            # "gelu": exact erf GELU; "gelu_new": the tanh approximation (HF BigBird)
    classifier_head: str = "pooled"     # "pooled": linear on tanh-pooled [CLS]; "hf": dense, act, out_proj on [CLS]
    sparse_layout: str = "random"       # "random": drawn random blocks; "hf_eval": HF's eval-mode layout
    # Classifiers only (model/bins.py): mark the tokens over the window's central `bin_bp` base pairs
    # as segment 1 (`bin_segment`) and pool them beside [CLS] (`bin_pooling`). None: [CLS] alone.
    bin_bp: int | None = None
    bin_segment: bool = True
    bin_pooling: bool = False

    def __post_init__(self) -> None:
        positive = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                    "max_position", "type_vocab_size", "block_size", "window_blocks")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model config: {name} must be a positive integer, got {value!r}")
        for name in ("num_global_blocks", "num_random_blocks", "attention_seed", "pad_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"model config: {name} must be a non-negative integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"model config: hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}; pick sizes with hidden_size = num_heads x head_dim")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"model config: attention {self.attention!r} is not one of {', '.join(ATTENTION_KINDS)}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"model config: attention_backend {self.attention_backend!r} is not one of "
                             f"{', '.join(ATTENTION_BACKENDS)}")
        if self.global_placement not in GLOBAL_PLACEMENTS:
            raise ValueError(f"model config: global_placement {self.global_placement!r} is not one of "
                             f"{', '.join(GLOBAL_PLACEMENTS)}")
        for name, allowed in (("norm_position", NORM_POSITIONS), ("activation", ACTIVATIONS),
                              ("classifier_head", CLASSIFIER_HEADS), ("sparse_layout", SPARSE_LAYOUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model config: {name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.sparse_layout == "hf_eval" and (self.global_placement, self.num_global_blocks,
                                                self.window_blocks) != ("ends", 2, 3):
            raise ValueError("model config: sparse_layout hf_eval is HF's layout: it needs global_placement: ends, "
                             "num_global_blocks: 2 and window_blocks: 3")
        if not isinstance(self.embedding_layer_norm, bool):
            raise ValueError(f"model config: embedding_layer_norm must be true or false, got {self.embedding_layer_norm!r}")
        if self.window_blocks % 2 == 0:
            raise ValueError(f"model config: window_blocks must be odd (a window centered on its block), "
                             f"got {self.window_blocks}")
        if self.combiner_span is not None and (not isinstance(self.combiner_span, int) or self.combiner_span < 1):
            raise ValueError(f"model config: combiner_span must be a positive integer or null, got {self.combiner_span!r}")
        if self.bin_bp is not None and (not isinstance(self.bin_bp, int) or self.bin_bp < 1):
            raise ValueError(f"model config: bin_bp must be a positive integer or null, got {self.bin_bp!r}")
        if self.bin_pooling and self.bin_bp is None:
            raise ValueError("model config: bin_pooling needs bin_bp (the width of the labeled bin, e.g. 200)")
        if self.bin_bp is not None and self.classifier_head != "pooled":
            raise ValueError(f"model config: bin_bp needs classifier_head: pooled (the bin's tokens are pooled beside "
                             f"[CLS] into its input), got {self.classifier_head!r}")
        if self.bin_bp is not None and self.bin_segment and self.type_vocab_size < 2:
            raise ValueError("model config: bin_segment marks the bin as segment 1, which needs type_vocab_size >= 2 "
                             f"(got {self.type_vocab_size}); set bin_segment: false")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        if self.pad_id >= self.vocab_size:
            raise ValueError(f"model config: pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size} tokens")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict:
        """Return the config as plain JSON/YAML data (what a checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        """Rebuild a config stored by `to_dict` (e.g. from a checkpoint's metadata)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"model config: unknown key(s) {unknown}; known keys: {sorted(names)}")
        return cls(**data)
