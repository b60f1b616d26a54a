"""What every pipeline run shares: an output directory, a log file, progress bars, a manifest."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from tqdm import tqdm

from genomics_bigbird.manifest import write_manifest

_CAPTURED = ("gbb", "genomics_bigbird")


class Job:
    """A pipeline run writing into `out_dir`: logs to `out_dir/<log_name>`, manifest at the end.

    Use as a context manager; the manifest is written only when the block succeeds.
    """

    def __init__(self, name: str, out_dir: str | Path, *, inputs: Sequence[str | Path] = (),
                 config: Mapping[str, Any] | None = None, seed: int | None = None,
                 quiet: bool = False, manifest_name: str = "manifest.json", log_name: str | None = None):
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
            self._handlers.append(console)
        # Pipelines log as gbb.*, the library as genomics_bigbird.*: both go to the job's log.
        for logger_name in _CAPTURED:
            logger = logging.getLogger(logger_name)
            logger.setLevel(logging.INFO)
            for handler in self._handlers:
                logger.addHandler(handler)
        self.log.info("started; outputs in %s", self.out_dir)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        elapsed = time.time() - self._start
        try:
            if exc_type is None:
                self.outputs.setdefault("elapsed_s", round(elapsed, 2))
                write_manifest(self.out_dir, command=self.name, inputs=self.inputs, config=self.config,
                               seed=self.seed, outputs=self.outputs, name=self.manifest_name)
                self.log.info("done in %.1f s", elapsed)
            else:
                self.log.error("failed after %.1f s: %s", elapsed, exc)
        finally:
            for logger_name in _CAPTURED:
                for handler in self._handlers:
                    logging.getLogger(logger_name).removeHandler(handler)
            for handler in self._handlers:
                handler.close()
            self._handlers.clear()

    def progress(self, iterable: Iterable | None = None, *, total: int | float | None = None,
                 desc: str = "", unit: str = "it", unit_scale: bool = False) -> Iterator:
        """A progress bar (rate and ETA) on stderr; silent when quiet or not a terminal in tests."""
        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                    disable=self.quiet, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
