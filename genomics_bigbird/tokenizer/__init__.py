"""The tokenizer layer: a sentencepiece BPE over A/C/G/T/N with reserved special ids."""
from genomics_bigbird.tokenizer.bpe import DNATokenizer

__all__ = ["DNATokenizer"]
