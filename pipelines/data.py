"""`gbb data fetch NAME` / `gbb data verify`: download the external data sets in data_manifests/.

A data manifest (one YAML per data set) lists its files with URL, size and checksum as published.
Downloads resume from a `FILE.part` through HTTP `Range` requests, show a progress bar, are
verified (md5/sha256, or size only where nothing is published) and only then renamed to `FILE`,
so a file under its final name is always complete and checked. `DEST/NAME/manifest.json` records
what was fetched (sizes, checksums, where each expectation came from) for `gbb data verify`.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from genomics_bigbird import __version__
from genomics_bigbird.errors import InputError
from genomics_bigbird.manifest import file_digest
from pipelines.job import Job

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "data_manifests"
CHUNK = 1 << 20
TIMEOUT_S = 60
_ALGORITHMS = ("md5", "sha256")


@dataclass(frozen=True)
class DataFile:
    """One downloadable file of a data set, with what its publisher tells us about it."""

    url: str
    filename: str
    size: int | None = None           # bytes, when known before downloading
    checksum: str | None = None       # "md5:<hex>" or "sha256:<hex>" as published
    checksum_url: str | None = None   # a published md5sum.txt / .md5 file, read at fetch time
    verify: str = "size-only"         # md5 | sha256 | size-only


@dataclass(frozen=True)
class DataSet:
    """An external data set: its files plus the provenance a user must cite."""

    name: str
    description: str
    build: str
    license: str
    citation: str
    files: tuple[DataFile, ...]
    postprocess: str = ""
    path: Path | None = None


def load_dataset(path: str | Path) -> DataSet:
    """Read one data manifest YAML; missing or malformed fields are an InputError naming the file."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"not valid YAML: {err}", path, None if mark is None else mark.line + 1) from None
    if not isinstance(tree, dict):
        raise InputError("a data manifest must be a YAML mapping", path)
    missing = [k for k in ("name", "description", "build", "license", "citation", "files") if k not in tree]
    if missing:
        raise InputError(f"data manifest lacks {missing}", path)
    files = []
    for i, entry in enumerate(tree["files"] or []):
        try:
            item = DataFile(**{k: v for k, v in entry.items() if k != "approx_size"})
        except TypeError as err:
            raise InputError(f"files[{i}]: {err}", path) from None
        if item.verify not in (*_ALGORITHMS, "size-only"):
            raise InputError(f"files[{i}].verify must be md5, sha256 or size-only, got {item.verify!r}", path)
        if item.checksum is not None and item.checksum.split(":")[0] != item.verify:
            raise InputError(f"files[{i}].checksum {item.checksum!r} must start with '{item.verify}:'", path)
        if item.verify != "size-only" and item.checksum is None and item.checksum_url is None:
            raise InputError(f"files[{i}] verifies by {item.verify} but gives no checksum or checksum_url", path)
        files.append(item)
    if not files:
        raise InputError("data manifest lists no files", path)
    fields = {k: tree[k] for k in ("name", "description", "build", "license", "citation")}
    return DataSet(**{k: str(v).strip() for k, v in fields.items()}, files=tuple(files),
                   postprocess=str(tree.get("postprocess") or "").strip(), path=path)


def available_datasets(manifest_dir: str | Path = MANIFEST_DIR) -> dict[str, DataSet]:
    """All data manifests in a directory, by name."""
    found = {}
    for path in sorted(Path(manifest_dir).glob("*.yaml")):
        dataset = load_dataset(path)
        found[dataset.name] = dataset
    return found


def _request(url: str, headers: dict[str, str] | None = None, method: str = "GET"):
    request = urllib.request.Request(url, method=method, headers={"User-Agent": f"gbb/{__version__}",
                                                                 **(headers or {})})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def published_checksum(checksum_url: str, filename: str) -> str:
    """Read the hex digest for `filename` from a published md5sum.txt-style file (or a bare .md5)."""
    try:
        with _request(checksum_url) as response:
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as err:
        raise InputError(f"cannot read the published checksum: {err}", checksum_url) from None
    for line in text.splitlines():
        words = line.replace("*", " ").split()
        if len(words) == 1 and re.fullmatch(r"[0-9a-fA-F]{32,64}", words[0]):
            return words[0].lower()
        if len(words) >= 2 and Path(words[-1]).name == filename:
            return words[0].lower()
    raise InputError(f"no checksum for {filename} in the published checksum file", checksum_url)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from `Content-Range: bytes 100-199/200` (or `bytes */200`)."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (header or "").strip())
    if not match:
        return None, None
    first, total = match.groups()
    return (None if first is None else int(first)), (None if total == "*" else int(total))


def download(url: str, part: Path, progress: Callable[..., object]) -> int | None:
    """Append the rest of `url` to `part` (resuming with a Range request); return the server's total size.

    `progress(total=, desc=)` makes a tqdm-like bar. A server that ignores Range (200 instead of
    206) makes us start over; an interrupted transfer leaves `part` for the next call to resume.
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _request(url, headers)
    except urllib.error.HTTPError as err:
        first, total = _content_range(err.headers.get("Content-Range"))
        if err.code == 416 and total == have:  # the part file already holds every byte
            return total
        raise InputError(f"HTTP {err.code} {err.reason}", url) from None
    except (urllib.error.URLError, OSError) as err:
        raise InputError(f"download failed: {err}", url) from None
    with response:
        if response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != have:
                raise InputError(f"server resumed at byte {first}, expected {have}; delete {part} and retry", url)
        else:
            have, length = 0, response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        bar = progress(total=total, desc=part.name.removesuffix(".part"))
        bar.update(have)
        try:
            with open(part, "ab" if have else "wb") as out:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
        except (http.client.HTTPException, OSError) as err:
            raise InputError(f"download interrupted after {part.stat().st_size} bytes ({err}); "
                             "run the same command again to resume", url) from None
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got != total:
        raise InputError(f"download interrupted at {got} of {total} bytes; run the same command again to resume", url)
    return total


def expected_checksum(item: DataFile) -> tuple[str, str, str] | None:
    """(algorithm, hex, source) for a file, reading the publisher's checksum file when needed."""
    if item.checksum is not None:
        algorithm, digest = item.checksum.split(":", 1)
        return algorithm, digest.lower(), "manifest"
    if item.checksum_url is not None:
        return item.verify, published_checksum(item.checksum_url, item.filename), item.checksum_url
    return None


def check_file(path: Path, size: int | None, checksum: tuple[str, str] | None) -> str | None:
    """Why `path` fails its expected size/checksum, or None when it passes."""
    got = path.stat().st_size
    if size is not None and got != size:
        return f"size {got} bytes, expected {size}"
    if checksum is not None:
        algorithm, want = checksum
        digest = file_digest(path, algorithm)
        if digest != want:
            return f"{algorithm} {digest}, expected {want}"
    return None


def fetch_file(item: DataFile, directory: Path, progress: Callable[..., object],
               recorded: dict | None = None) -> dict:
    """Download, verify and rename one file; return what was checked (for the fetch record).

    A file already present under its final name is checked (against `recorded`, the previous
    fetch record, when the publisher gives no size) and kept.
    """
    final, part = directory / item.filename, directory / (item.filename + ".part")
    checksum = expected_checksum(item)
    if final.exists():
        size = item.size if item.size is not None else (recorded or {}).get("bytes")
        problem = check_file(final, size, checksum and checksum[:2])
        if problem:
            raise InputError(f"existing file fails verification ({problem}); delete it and fetch again", final)
        total = final.stat().st_size
    else:
        total = download(item.url, part, progress)
        size = item.size if item.size is not None else total
        problem = check_file(part, size, checksum and checksum[:2])
        if problem:
            part.unlink()  # wrong bytes cannot be resumed from
            raise InputError(f"verification failed ({problem}); the download was deleted", item.url)
        # The stable `.part` name (not atomic_path's random one) is what lets a rerun resume;
        # the rename below is the same atomic step.
        os.replace(part, final)
    record = {"url": item.url, "bytes": final.stat().st_size, "verified_by": item.verify}
    if checksum is not None:
        record.update({checksum[0]: checksum[1], "checksum_source": checksum[2]})
    return record


def fetch_record(directory: Path) -> dict:
    """What the last successful fetch into `directory` checked, by file name ({} if none)."""
    path = directory / "manifest.json"
    return json.loads(path.read_text())["outputs"].get("files", {}) if path.exists() else {}


def main_fetch(name: str, dest: str | Path, manifest_dir: str | Path = MANIFEST_DIR,
               quiet: bool = False) -> dict:
    """Fetch every file of data set `name` into `dest/name`; return the fetch record."""
    datasets = available_datasets(manifest_dir)
    if name not in datasets:
        raise InputError(f"unknown data set {name!r}; known: {', '.join(sorted(datasets)) or 'none'}", manifest_dir)
    dataset = datasets[name]
    directory = Path(dest) / name
    with Job("data_fetch", directory, inputs=[dataset.path], config={"name": name, "build": dataset.build},
             quiet=quiet) as job:
        def progress(total, desc):
            return job.progress(total=total, desc=desc, unit="B", unit_scale=True)
        recorded = fetch_record(directory)
        files = {}
        for item in dataset.files:
            job.log.info("fetching %s", item.url)
            files[item.filename] = fetch_file(item, directory, progress, recorded.get(item.filename))
            job.log.info("%s: %d bytes, verified by %s", item.filename, files[item.filename]["bytes"], item.verify)
        job.outputs["files"] = files
        if dataset.postprocess:
            job.log.info("next steps: %s", dataset.postprocess)
    return files


def verify_dataset(dataset: DataSet, directory: Path) -> list[tuple[str, str]]:
    """(filename, 'ok' or the problem) for each file of a fetched data set, offline."""
    recorded = fetch_record(directory)
    results = []
    for item in dataset.files:
        path, seen = directory / item.filename, recorded.get(item.filename, {})
        if not path.exists():
            results.append((item.filename, "missing"))
            continue
        size = item.size if item.size is not None else seen.get("bytes")
        if item.checksum is not None:
            checksum = tuple(item.checksum.split(":", 1))
        elif item.verify in seen:
            checksum = (item.verify, seen[item.verify])
        else:
            checksum = None
        if size is None and checksum is None:
            results.append((item.filename, "no size or checksum known: fetch it with gbb data fetch"))
            continue
        results.append((item.filename, check_file(path, size, checksum) or "ok"))
    return results


def main_verify(dest: str | Path, names: list[str] | None = None,
                manifest_dir: str | Path = MANIFEST_DIR) -> dict[str, list[tuple[str, str]]]:
    """Verify the data sets present under `dest` (or the named ones); return results per data set."""
    datasets = available_datasets(manifest_dir)
    unknown = sorted(set(names or ()) - set(datasets))
    if unknown:
        raise InputError(f"unknown data set(s) {unknown}; known: {', '.join(sorted(datasets))}", manifest_dir)
    chosen = names or [n for n in datasets if (Path(dest) / n).is_dir()]
    return {name: verify_dataset(datasets[name], Path(dest) / name) for name in chosen}


def add_arguments(parser, command: tuple[str, ...]) -> None:
    if command == ("data", "fetch"):
        parser.add_argument("name", help="data set name (a file in data_manifests/)")
    else:
        parser.add_argument("names", nargs="*", help="data sets to check (default: all present under --dest)")
    parser.add_argument("--dest", default="data", help="download directory; files go to DEST/NAME/ (default: data)")
    parser.add_argument("--manifests", default=str(MANIFEST_DIR), help="directory of data manifest YAML files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def run(args) -> int:
    if args.command == ("data", "fetch"):
        main_fetch(args.name, args.dest, args.manifests, quiet=args.quiet)
        return 0
    results = main_verify(args.dest, args.names, args.manifests)
    failed = []
    for name, checks in results.items():
        for filename, status in checks:
            print(f"{name}\t{filename}\t{status}")
            if status != "ok":
                failed.append(f"{name}/{filename}")
    if not results:
        print(f"no data sets under {args.dest}")
    if failed:
        raise InputError(f"{len(failed)} file(s) failed verification: {', '.join(failed)}", args.dest)
    return 0
