"""Run manifests: inputs with checksums, parameters, seed and software versions."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from genomics_bigbird.atomic import atomic_write

_VERSIONED = ("genomics-bigbird", "torch", "numpy", "pysam", "sentencepiece", "h5py", "deepspeed")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Return the hex digest (sha256, md5, ...) of a file, read in chunks (works for multi-GB FASTA)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file."""
    return file_digest(path, "sha256", chunk_size)


def software_versions() -> dict[str, str]:
    """Return the versions of Python and the packages that shape our outputs."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_inputs(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Return path, size and SHA-256 for each input file."""
    described = []
    for path in paths:
        p = Path(path)
        described.append({"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    return described


def write_manifest(
    out_dir: str | os.PathLike,
    *,
    command: str,
    inputs: Iterable[str | os.PathLike] = (),
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    outputs: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
    name: str = "manifest.json",
) -> Path:
    """Write `out_dir/name` describing how the directory's contents were made (runtime: e.g. thread count)."""
    manifest = {
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": seed,
        "inputs": describe_inputs(inputs),
        "config": dict(config or {}),
        "outputs": dict(outputs or {}),
        "runtime": dict(runtime or {}),
        "versions": software_versions(),
    }
    path = Path(out_dir) / name
    with atomic_write(path) as handle:
        json.dump(manifest, handle, indent=2, default=str)
        handle.write("\n")
    return path
