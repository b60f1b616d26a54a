"""The genome layer: reference FASTA access, sequence utilities, BED intervals, windows, liftover."""
from genomics_bigbird.genome.intervals import BedRecord, NarrowPeak, read_bed, read_narrowpeak, write_bed
from genomics_bigbird.genome.liftover import ChainLifter, LiftoverResult, Unmapped, liftover_bed
from genomics_bigbird.genome.reference import ReferenceGenome
from genomics_bigbird.genome.sequence import normalize, reverse_complement
from genomics_bigbird.genome.windows import Window, centered_window, extract_windows, tss_window

__all__ = [
    "BedRecord", "ChainLifter", "LiftoverResult", "NarrowPeak", "ReferenceGenome", "Unmapped", "Window",
    "centered_window", "extract_windows", "liftover_bed", "normalize", "read_bed", "read_narrowpeak",
    "reverse_complement", "tss_window", "write_bed",
]
