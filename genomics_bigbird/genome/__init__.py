"""The genome layer: reference FASTA access, sequence utilities, BED intervals, windows, liftover."""
from genomics_bigbird.genome.reference import ReferenceGenome
from genomics_bigbird.genome.sequence import normalize, reverse_complement

__all__ = ["ReferenceGenome", "normalize", "reverse_complement"]
