"""The BigBird pretraining corpus (Zaheer et al. 2020, appendix F.1): documents of consecutive DNA sentences.

Per contig and per pass (10 by default): start at a uniform offset q in [0, 5000); repeat while
q < contig length: draw s ~ U{50..100} sentences, each of U{500..1000} consecutive bases, read them
as one document, advance q by the document's length. The last document (and its last sentence)
stops at the contig end. Sentences that are all N are dropped; sentences with some N are kept.

Each (contig, pass) has its own Generator seeded from (seed, pass, contig name), so a contig's
documents do not depend on which other contigs are processed, and contigs run in parallel
(`write_corpus(workers=...)`). The genome is read one document (25-100 kbp) at a time.

On disk (`write_corpus`): one text file per contig (`<contig>.txt`: one sentence per line, a
blank line after each document, all passes in order), `documents.tsv` (one row per document:
file, contig, pass, start, end, sentences, dropped) and `counts.json`.
"""
from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from genomics_bigbird.atomic import atomic_write
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.parallel import ordered_map

log = logging.getLogger(__name__)

MAX_START_OFFSET = 5000
SENTENCES_PER_DOCUMENT = (50, 100)   # inclusive
SENTENCE_BP = (500, 1000)            # inclusive
DOCUMENTS_TSV = "documents.tsv"
COUNTS_JSON = "counts.json"


@dataclass(frozen=True)
class Document:
    """One F.1 document: sentences of `contig` read from [start, end) in pass `pass_index`.

    `sentence_starts[i]` is the 0-based genome position of `sentences[i]`; `dropped` counts the
    all-N sentences removed from this span. A document whose sentences are all N has none left.
    """

    contig: str
    pass_index: int
    start: int
    end: int
    sentences: list[str]
    sentence_starts: list[int]
    dropped: int = 0

    @property
    def bp(self) -> int:
        """Bases kept in the document's sentences."""
        return sum(len(s) for s in self.sentences)


def contig_generator(seed: int, contig: str, pass_index: int) -> np.random.Generator:
    """Return the Generator of one (contig, pass), from the seed and a stable hash of the contig name."""
    return np.random.default_rng([seed, pass_index, zlib.crc32(contig.encode())])


def iter_contig_documents(genome: ReferenceGenome, contig: str, pass_index: int, seed: int = 0) -> Iterator[Document]:
    """Yield the F.1 documents of one pass over one contig (all-N documents included, with no sentences)."""
    name = genome.resolve(contig)
    length = genome.contigs[name]
    rng = contig_generator(seed, name, pass_index)
    position = int(rng.integers(0, MAX_START_OFFSET))
    while position < length:
        n_sentences = int(rng.integers(SENTENCES_PER_DOCUMENT[0], SENTENCES_PER_DOCUMENT[1] + 1))
        lengths = rng.integers(SENTENCE_BP[0], SENTENCE_BP[1] + 1, size=n_sentences)
        bounds = position + np.concatenate([[0], np.cumsum(lengths)])
        end = min(int(bounds[-1]), length)
        bases = genome.fetch(name, position, end)
        sentences, starts, dropped = [], [], 0
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if lo >= end:
                break
            sentence = bases[lo - position:min(hi, end) - position]
            if sentence.count("N") == len(sentence):
                dropped += 1
                continue
            sentences.append(sentence)
            starts.append(lo)
        yield Document(name, pass_index, position, end, sentences, starts, dropped)
        position = int(bounds[-1])


def iter_documents(genome: ReferenceGenome, contigs: Sequence[str] | None = None, passes: int = 10,
                   seed: int = 0) -> Iterator[Document]:
    """Yield the F.1 documents of `contigs` (default: all), contig by contig, `passes` passes each."""
    names = [genome.resolve(c) for c in (contigs if contigs else genome.contigs)]
    if passes < 1:
        raise InputError(f"passes must be >= 1, got {passes}")
    for name in names:
        for pass_index in range(passes):
            yield from iter_contig_documents(genome, name, pass_index, seed)


@dataclass
class CorpusCounts:
    """What a corpus holds: documents, sentences, bases, and all-N sentences/documents dropped."""

    documents: int = 0
    sentences: int = 0
    bp: int = 0
    dropped_sentences: int = 0
    dropped_documents: int = 0
    per_contig: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, doc: Document) -> None:
        contig = self.per_contig.setdefault(doc.contig, {"documents": 0, "sentences": 0, "bp": 0,
                                                          "dropped_sentences": 0})
        self.dropped_sentences += doc.dropped
        contig["dropped_sentences"] += doc.dropped
        if not doc.sentences:
            self.dropped_documents += 1
            return
        for key, value in (("documents", 1), ("sentences", len(doc.sentences)), ("bp", doc.bp)):
            setattr(self, key, getattr(self, key) + value)
            contig[key] += value

    def merge(self, other: "CorpusCounts") -> None:
        """Add the counts of other contigs (`other.per_contig` must not overlap these)."""
        for key in ("documents", "sentences", "bp", "dropped_sentences", "dropped_documents"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.per_contig.update(other.per_contig)


def corpus_file_name(contig: str) -> str:
    """Return the corpus text file name of a contig (`chr1.txt`; path separators replaced)."""
    return contig.replace(os.sep, "_").replace("/", "_") + ".txt"


@dataclass(frozen=True)
class ContigWriter:
    """Write one contig's corpus file (all passes) and return its counts and documents.tsv rows.

    Picklable (the genome re-opens its FASTA in each process), so contigs can run in worker processes.
    """

    genome: ReferenceGenome
    out_dir: Path
    passes: int
    seed: int
    progress: Callable[[int], None] | None = None  # called with each document's span (in this process only)

    def __call__(self, name: str) -> tuple[CorpusCounts, list[str], int]:
        """(counts, documents.tsv rows, bases spanned by the documents) of contig `name`."""
        counts = CorpusCounts()
        rows, spanned = [], 0
        file_name = corpus_file_name(name)
        with atomic_write(self.out_dir / file_name) as handle:
            for doc in iter_documents(self.genome, [name], self.passes, self.seed):
                counts.add(doc)
                spanned += doc.end - doc.start
                if self.progress is not None:
                    self.progress(doc.end - doc.start)
                if doc.sentences:
                    handle.write("\n".join(doc.sentences))
                    handle.write("\n\n")
                    rows.append(f"{file_name}\t{doc.contig}\t{doc.pass_index}\t{doc.start}\t{doc.end}\t"
                                f"{len(doc.sentences)}\t{doc.dropped}\n")
        return counts, rows, spanned


def write_corpus(genome: ReferenceGenome, out_dir: str | os.PathLike, contigs: Sequence[str] | None = None,
                 passes: int = 10, seed: int = 0, progress: Callable[[int], None] | None = None,
                 workers: int = 1) -> CorpusCounts:
    """Write the F.1 corpus as one text file per contig plus documents.tsv and counts.json; return the counts.

    `workers` processes write one contig each (a contig's documents depend only on the seed, its
    name and the pass, so the files are the same bytes for any count). `progress(bp)` is called
    with the bases each document spans (with several workers: each finished contig's).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [genome.resolve(c) for c in (contigs if contigs else genome.contigs)]
    if len(set(names)) != len(names):
        raise InputError(f"contigs listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if passes < 1:
        raise InputError(f"passes must be >= 1, got {passes}")
    counts = CorpusCounts()
    # Largest contigs first, so the longest task starts at once; rows and counts are put back in
    # the given order below (holding at most the rows of contigs that finished early: ~60 bytes a
    # document, 30 MB for GRCh37 at 10 passes).
    order = sorted(names, key=lambda n: -genome.contigs[n]) if workers > 1 else names
    finished: dict[str, tuple[CorpusCounts, list[str]]] = {}
    with atomic_write(out / DOCUMENTS_TSV) as tsv:
        tsv.write("file\tcontig\tpass\tstart\tend\tsentences\tdropped\n")
        next_name = iter(names)
        waiting = next(next_name, None)
        writer = ContigWriter(genome, out, passes, seed, progress if workers == 1 else None)
        for name, (contig_counts, rows, spanned) in zip(order, ordered_map(writer, order, workers)):
            finished[name] = (contig_counts, rows)
            if progress is not None and workers > 1:
                progress(spanned)
            while waiting in finished:  # write documents.tsv rows in the given contig order
                contig_counts, rows = finished.pop(waiting)
                counts.merge(contig_counts)
                tsv.writelines(rows)
                waiting = next(next_name, None)
    summary = {"files": [corpus_file_name(n) for n in names], "passes": passes, "seed": seed,
               **vars(counts)}
    with atomic_write(out / COUNTS_JSON) as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    log.info("corpus: %d documents, %d sentences, %d bp (%d all-N sentences dropped)",
             counts.documents, counts.sentences, counts.bp, counts.dropped_sentences)
    return counts


def merge_corpora(parts: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> CorpusCounts:
    """Gather corpus directories of disjoint contigs (e.g. one cluster job per contig) into `out_dir`.

    The text files stay where they are: `out_dir/counts.json` lists them by relative path, in the
    order of `parts`, and `out_dir/documents.tsv` concatenates the parts' rows. The result reads
    like one `write_corpus` over those contigs (same documents, in the same order). The parts must
    share passes and seed; a contig in two parts is an InputError.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = CorpusCounts()
    files: list[str] = []
    settings = None
    with atomic_write(out / DOCUMENTS_TSV) as tsv:
        tsv.write("file\tcontig\tpass\tstart\tend\tsentences\tdropped\n")
        for part in map(Path, parts):
            summary_path = part / COUNTS_JSON
            if not summary_path.is_file():
                raise InputError(f"no {COUNTS_JSON} here: not a finished `gbb corpus` directory", part)
            summary = json.loads(summary_path.read_text())
            if settings is None:
                settings = (summary["passes"], summary["seed"])
            elif (summary["passes"], summary["seed"]) != settings:
                raise InputError(f"passes {summary['passes']} and seed {summary['seed']} differ from the first part's "
                                 f"{settings[0]} and {settings[1]}: every part must be built alike", part)
            repeated = sorted(set(summary["per_contig"]) & set(counts.per_contig))
            if repeated:
                raise InputError(f"contigs {', '.join(repeated)} are in two parts", part)
            relative = {name: os.path.relpath(part / name, out) for name in summary["files"]}
            files += relative.values()
            part_counts = CorpusCounts(**{k: summary[k] for k in vars(CorpusCounts())})
            counts.merge(part_counts)
            with open(part / DOCUMENTS_TSV) as rows:
                next(rows)  # header
                for row in rows:
                    name, rest = row.split("\t", 1)
                    tsv.write(f"{relative[name]}\t{rest}")
    if settings is None:
        raise InputError("give at least one corpus directory to merge")
    summary = {"files": files, "passes": settings[0], "seed": settings[1], **vars(counts)}
    with atomic_write(out / COUNTS_JSON) as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    return counts


def corpus_files(corpus_dir: str | os.PathLike) -> list[Path]:
    """Return the text files of a corpus directory in the order `write_corpus` listed them."""
    directory = Path(corpus_dir)
    summary = directory / COUNTS_JSON
    if summary.is_file():
        files = [directory / name for name in json.loads(summary.read_text())["files"]]
    else:
        files = sorted(directory.glob("*.txt"))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"corpus files missing: {', '.join(missing)}", directory)
    if not files:
        raise InputError("no corpus files (*.txt) here; build one with `gbb corpus`", directory)
    return files


def read_documents(path: str | os.PathLike) -> Iterator[list[str]]:
    """Yield the documents of a corpus text file, each a list of sentences (blank lines separate documents)."""
    document: list[str] = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                document.append(line)
            elif document:
                yield document
                document = []
    if document:
        yield document


def iter_corpus_documents(files: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, int, list[str]]]:
    """Yield (file, index of the document in that file, sentences) over corpus files in order."""
    for path in files:
        for index, document in enumerate(read_documents(path)):
            yield Path(path), index, document
