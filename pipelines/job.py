"""What every pipeline run shares: an output directory, a log file, progress bars, a manifest."""
from __future__ import annotations

import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from tqdm import tqdm

from genomics_bigbird.atomic import atomic_write
from genomics_bigbird.manifest import write_manifest
from pipelines import threads

_CAPTURED = ("gbb", "genomics_bigbird")


class Job:
    """A pipeline run writing into `out_dir`: logs to `out_dir/<log_name>`, manifest at the end.

    Use as a context manager; the manifest is written only when the block succeeds, and not at
    all with `manifest_name=None` (a run that finds its work already done keeps the manifest of
    the run that did it).
    """

    def __init__(self, name: str, out_dir: str | Path, *, inputs: Sequence[str | Path] = (),
                 config: Mapping[str, Any] | None = None, seed: int | None = None,
                 quiet: bool = False, manifest_name: str | None = "manifest.json", log_name: str | None = None):
        self.name = name
        self.out_dir = Path(out_dir)
        self.inputs = list(inputs)
        self.config = dict(config or {})
        self.seed = seed
        self.quiet = quiet
        self.manifest_name = manifest_name
        self.log_name = log_name or f"{name}.log"
        self.outputs: dict[str, Any] = {}
        self.log = logging.getLogger(f"gbb.{name}")
        self._handlers: list[logging.Handler] = []
        self._showwarning = None
        self._start = 0.0

    def __enter__(self) -> "Job":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._start = time.time()
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        file_handler = logging.FileHandler(self.out_dir / self.log_name)
        file_handler.setFormatter(fmt)
        self._handlers.append(file_handler)
        if not self.quiet:
            console = logging.StreamHandler(sys.stderr)
            console.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
            console.addFilter(lambda record: not getattr(record, "log_file_only", False))
            self._handlers.append(console)
        # Pipelines log as gbb.*, the library as genomics_bigbird.*: both go to the job's log.
        for logger_name in _CAPTURED:
            logger = logging.getLogger(logger_name)
            logger.setLevel(logging.INFO)
            for handler in self._handlers:
                logger.addHandler(handler)
        # Python warnings (e.g. a library's FutureWarning) go to the log too: on the console only
        # when it is not quiet.
        self._showwarning, warnings.showwarning = warnings.showwarning, self._log_warning
        self.log.info("started; outputs in %s", self.out_dir)
        if (choice := threads.current()) is not None:
            self.log.info("using %s", choice.describe())
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        elapsed = time.time() - self._start
        try:
            if exc_type is None and self.manifest_name is None:
                self.log.info("done in %.1f s", elapsed)
            elif exc_type is None:
                self.outputs.setdefault("elapsed_s", round(elapsed, 2))
                choice = threads.current()
                runtime = {"threads": choice.threads, "threads_reason": choice.reason} if choice else {}
                write_manifest(self.out_dir, command=self.name, inputs=self.inputs, config=self.config,
                               seed=self.seed, outputs=self.outputs, runtime=runtime, name=self.manifest_name)
                self.log.info("done in %.1f s", elapsed)
            else:  # the console gets the error once, from whoever handles it (gbb prints it in one line)
                self.log.error("failed after %.1f s: %s", elapsed, exc, extra={"log_file_only": True})
        finally:
            warnings.showwarning = self._showwarning
            for logger_name in _CAPTURED:
                for handler in self._handlers:
                    logging.getLogger(logger_name).removeHandler(handler)
            for handler in self._handlers:
                handler.close()
            self._handlers.clear()

    def _log_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.log.warning("%s: %s (%s:%d)", category.__name__, message, filename, lineno)

    def progress(self, iterable: Iterable | None = None, *, total: int | float | None = None,
                 desc: str = "", unit: str = "it", unit_scale: bool = False) -> Iterator:
        """A progress bar (rate and ETA) on stderr; silent when quiet or not a terminal in tests."""
        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                    disable=self.quiet, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)


class RankLog:
    """What a non-zero rank uses instead of a Job: a logger, a silent progress bar, no files."""

    def __init__(self, rank: int, name: str):
        self.log = logging.getLogger(f"gbb.{name}.rank{rank}")
        self.outputs: dict[str, Any] = {}

    def __enter__(self) -> "RankLog":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def progress(self, iterable: Iterable | None = None, *, total: int | float | None = None, **_) -> Iterator:
        return tqdm(iterable, total=total, disable=True)


class MetricsWriter:
    """metrics.jsonl + TensorBoard (tags `<prefix>/<name>`) on rank 0.

    A resumed run first drops the records logged after its checkpoint (`start_step`).
    """

    def __init__(self, out_dir: Path, start_step: int, enabled: bool, prefix: str):
        self.enabled, self.prefix = enabled, prefix
        self.path = Path(out_dir) / "metrics.jsonl"
        self.tensorboard = None
        self.kept: list[dict] = []
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        kept = []
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= start_step]
        self.kept = [json.loads(line) for line in kept]
        with atomic_write(self.path) as handle:
            handle.writelines(line + "\n" for line in kept)
        self.tensorboard = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=start_step + 1)

    def last_record(self, key: str = "loss") -> dict:
        """The last record kept from before `start_step` that has `key` ({} if none)."""
        return next((record for record in reversed(self.kept) if key in record), {})

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if name not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                self.tensorboard.add_scalar(f"{self.prefix}/{name}", value, record["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
