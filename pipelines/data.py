"""`gbb data fetch NAME` / `gbb data verify`: download the external data sets in data_manifests/.

A data manifest (one YAML per data set) lists its files with URL, size and checksum as the
publisher gives them, and where the checksum is published. Checksums are pinned in the manifest,
never read from the server at fetch time: a checksum fetched from the same server as the file
only shows that the transfer matched what that server says. Where a publisher gives none, the
manifest says so and why, and the fetch record says `verified_by: nothing`.

pooch downloads, retries and verifies. Its own HTTP downloader starts an interrupted transfer
over; for multi-gigabyte files ours continues it from `FILE.part` with an HTTP Range request, so
a rerun (or pooch's retry) fetches only the missing bytes. `DEST/NAME/manifest.json` records what
was fetched and checked, for `gbb data verify`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from genomics_bigbird import __version__
from genomics_bigbird.errors import InputError
from genomics_bigbird.manifest import file_digest
from pipelines.config import read_yaml_mapping, shipped_dir
from pipelines.job import Job

CHUNK = 1 << 20
TIMEOUT_S = 60
RETRIES = 3
_CHECKSUM = re.compile(r"(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class DataFile:
    """One downloadable file of a data set, with what its publisher tells us about it."""

    url: str
    filename: str
    size: int | None = None              # bytes, pinned when known
    checksum: str | None = None          # "md5:<hex>" or "sha256:<hex>", as published
    checksum_source: str | None = None   # where the publisher gives that checksum
    no_checksum: str | None = None       # why there is none (required when checksum is null)
    approx_size: str | None = None       # for people: "0.95 GB"

    @property
    def checks(self) -> list[str]:
        """What a fetch verifies this file by, from values pinned in the manifest."""
        return ([self.checksum.split(":")[0]] if self.checksum else []) + (["size"] if self.size else [])


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
    tree = read_yaml_mapping(path)
    missing = [k for k in ("name", "description", "build", "license", "citation", "files") if k not in tree]
    if missing:
        raise InputError(f"data manifest lacks {missing}", path)
    files = []
    for i, entry in enumerate(tree["files"] or []):
        try:
            item = DataFile(**entry)
        except TypeError as err:
            raise InputError(f"files[{i}]: {err}", path) from None
        if item.checksum is not None and not _CHECKSUM.fullmatch(item.checksum):
            raise InputError(f"files[{i}].checksum must be md5:<32 hex> or sha256:<64 hex>, got {item.checksum!r}",
                             path)
        if item.checksum is not None and not item.checksum_source:
            raise InputError(f"files[{i}] pins a checksum but not its checksum_source (where it is published)", path)
        if item.checksum is None and not item.no_checksum:
            raise InputError(f"files[{i}] has no checksum: say why in no_checksum", path)
        files.append(item)
    if not files:
        raise InputError("data manifest lists no files", path)
    fields = {k: tree[k] for k in ("name", "description", "build", "license", "citation")}
    return DataSet(**{k: str(v).strip() for k, v in fields.items()}, files=tuple(files),
                   postprocess=str(tree.get("postprocess") or "").strip(), path=path)


def available_datasets(manifest_dir: str | Path | None = None) -> dict[str, DataSet]:
    """All data manifests in a directory (default: the shipped data_manifests/), by name."""
    found = {}
    for path in sorted(Path(manifest_dir or shipped_dir("data_manifests")).glob("*.yaml")):
        dataset = load_dataset(path)
        found[dataset.name] = dataset
    return found


class ResumingDownloader:
    """A pooch downloader that continues an interrupted transfer from `<file>.part` (HTTP Range).

    A dropped connection raises a requests error, which pooch retries (resuming here); a missing
    file or a size other than the manifest's is an InputError, which it does not.
    """

    def __init__(self, item: DataFile, part: Path, progress: Callable[..., object]):
        self.item, self.part, self.progress = item, part, progress

    def __call__(self, url: str, output_file: str, pooch_instance: object, check_only: bool = False) -> None:
        import requests

        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"User-Agent": f"gbb/{__version__}", **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
            first, total = _content_range(response.headers.get("Content-Range"))
            if response.status_code == 416 and total == have:  # the part file already holds every byte
                os.replace(self.part, output_file)
                return
            if response.status_code >= 400:
                raise InputError(f"HTTP {response.status_code} {response.reason}", url)
            if response.status_code != 206:  # the server ignored Range: start over
                have, first = 0, 0
                total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
            if first != have:
                raise InputError(f"server resumed at byte {first}, expected {have}; delete {self.part} and retry", url)
            if self.item.size is not None and total is not None and total != self.item.size:
                raise InputError(f"the server's file has {total} bytes, the manifest pins {self.item.size}: it has "
                                 f"changed since the manifest was written", url)
            bar = self.progress(total=total, desc=self.item.filename)
            bar.update(have)
            try:
                with open(self.part, "ab" if have else "wb") as out:
                    # read1: each block as it arrives, so a dropped connection loses nothing already
                    # received; raw bytes, as the server stores them (no Content-Encoding decoding)
                    while block := _read_block(response.raw):
                        out.write(block)
                        bar.update(len(block))
            finally:
                bar.close()
        got = self.part.stat().st_size
        if total is not None and got != total:
            raise requests.exceptions.ConnectionError(f"transfer ended at {got} of {total} bytes")
        os.replace(self.part, output_file)  # pooch verifies it and moves it to its final name


def _read_block(raw) -> bytes:
    """The next block of a streamed body; b"" at its end. A broken connection raises a requests error."""
    import requests
    import urllib3

    try:
        return raw.read1(CHUNK, decode_content=False)
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise requests.exceptions.ConnectionError(f"connection broken: {err}") from None


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from `Content-Range: bytes 100-199/200` (or `bytes */200`)."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (header or "").strip())
    if not match:
        return None, None
    first, total = match.groups()
    return (None if first is None else int(first)), (None if total == "*" else int(total))


class _ToLog(logging.Handler):
    """Re-logs pooch's records on a job's logger."""

    def __init__(self, log: logging.Logger):
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.info("pooch: %s", record.getMessage())


@contextlib.contextmanager
def _pooch_logs_to(log: logging.Logger) -> Iterator[None]:
    """pooch logs to stderr through its own handler; send its lines to the job's log instead."""
    import pooch

    logger = pooch.get_logger()
    saved, logger.handlers = logger.handlers[:], [_ToLog(log)]
    try:
        yield
    finally:
        logger.handlers = saved


def fetch_file(item: DataFile, directory: Path, progress: Callable[..., object], retries: int = RETRIES) -> dict:
    """Download (or keep, when already verified) and verify one file; return what was checked."""
    import pooch
    import requests

    part = directory / (item.filename + ".part")
    store = pooch.create(path=directory, base_url="", registry={item.filename: item.checksum},
                         urls={item.filename: item.url}, retry_if_failed=retries)
    try:
        store.fetch(item.filename, downloader=ResumingDownloader(item, part, progress))
    except requests.exceptions.RequestException as err:
        kept = part.stat().st_size if part.exists() else 0
        raise InputError(f"download failed after {retries + 1} attempts ({err}); {kept} bytes are kept in "
                         f"{part.name}: run the same command again to resume", item.url) from None
    except ValueError as err:  # pooch: the checksum does not match (the download is deleted)
        raise InputError(f"{err} (expected: as published at {item.checksum_source})", item.url) from None
    final = directory / item.filename
    if item.size is not None and final.stat().st_size != item.size:
        raise InputError(f"size {final.stat().st_size} bytes, the manifest pins {item.size}", final)
    record = {"url": item.url, "bytes": final.stat().st_size, "sha256": file_digest(final, "sha256"),
              "verified_by": ", ".join(item.checks) or "nothing"}
    if item.checksum:
        record.update(checksum=item.checksum, checksum_source=item.checksum_source)
    else:
        record["no_checksum"] = item.no_checksum
    return record


def fetch_record(directory: Path) -> dict:
    """What the last successful fetch into `directory` checked, by file name ({} if none)."""
    path = directory / "manifest.json"
    return json.loads(path.read_text())["outputs"].get("files", {}) if path.exists() else {}


def main_fetch(name: str, dest: str | Path, manifest_dir: str | Path | None = None, quiet: bool = False,
               retries: int = RETRIES) -> dict:
    """Fetch every file of data set `name` into `dest/name`; return the fetch record."""
    datasets = available_datasets(manifest_dir)
    if name not in datasets:
        raise InputError(f"unknown data set {name!r}; known: {', '.join(sorted(datasets)) or 'none'}",
                         manifest_dir or shipped_dir("data_manifests"))
    dataset = datasets[name]
    directory = Path(dest) / name
    with Job("data_fetch", directory, inputs=[dataset.path], config={"name": name, "build": dataset.build},
             quiet=quiet) as job, _pooch_logs_to(job.log):
        def progress(total, desc):
            return job.progress(total=total, desc=desc, unit="B", unit_scale=True)
        files = {}
        for item in dataset.files:
            job.log.info("fetching %s", item.url)
            files[item.filename] = fetch_file(item, directory, progress, retries)
            job.log.info("%s: %d bytes, verified by %s", item.filename, files[item.filename]["bytes"],
                         files[item.filename]["verified_by"])
            if not item.checksum:
                job.log.warning("%s is unverified: %s", item.filename, item.no_checksum)
        job.outputs["files"] = files
        if dataset.postprocess:
            job.log.info("next steps: %s", dataset.postprocess)
    return files


def verify_dataset(dataset: DataSet, directory: Path) -> list[tuple[str, str]]:
    """(filename, 'ok' or the problem) for each file of a fetched data set, offline.

    Against the manifest's checksum and size where it pins them, else against the SHA-256 the
    fetch recorded (which shows the file is unchanged since, not that it is what was published).
    """
    recorded = fetch_record(directory)
    results = []
    for item in dataset.files:
        path, seen = directory / item.filename, recorded.get(item.filename, {})
        if not path.exists():
            results.append((item.filename, "missing"))
            continue
        checksum = item.checksum or (f"sha256:{seen['sha256']}" if "sha256" in seen else None)
        if checksum is None and item.size is None:
            results.append((item.filename, "nothing to check against: fetch it with gbb data fetch"))
            continue
        results.append((item.filename, _problem(path, item.size, checksum) or "ok"))
    return results


def _problem(path: Path, size: int | None, checksum: str | None) -> str | None:
    """Why `path` fails its expected size/checksum, or None when it passes."""
    got = path.stat().st_size
    if size is not None and got != size:
        return f"size {got} bytes, expected {size}"
    if checksum is not None:
        algorithm, want = checksum.split(":", 1)
        digest = file_digest(path, algorithm)
        if digest != want:
            return f"{algorithm} {digest}, expected {want}"
    return None


def main_verify(dest: str | Path, names: list[str] | None = None,
                manifest_dir: str | Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """Verify the data sets present under `dest` (or the named ones); return results per data set."""
    datasets = available_datasets(manifest_dir)
    unknown = sorted(set(names or ()) - set(datasets))
    if unknown:
        raise InputError(f"unknown data set(s) {unknown}; known: {', '.join(sorted(datasets))}",
                         manifest_dir or shipped_dir("data_manifests"))
    chosen = names or [n for n in datasets if (Path(dest) / n).is_dir()]
    return {name: verify_dataset(datasets[name], Path(dest) / name) for name in chosen}


def add_arguments(parser, command: tuple[str, ...]) -> None:
    if command == ("data", "fetch"):
        parser.add_argument("name", help="data set name (a file in data_manifests/)")
        parser.add_argument("--retries", type=int, default=RETRIES,
                            help=f"attempts after a failed transfer, each resuming it (default {RETRIES})")
    else:
        parser.add_argument("names", nargs="*", help="data sets to check (default: all present under --dest)")
    parser.add_argument("--dest", default="data", help="download directory; files go to DEST/NAME/ (default: data)")
    parser.add_argument("--manifests", default=None,
                        help="directory of data manifest YAML files (default: the data_manifests/ shipped with gbb)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def run(args) -> int:
    if args.command == ("data", "fetch"):
        main_fetch(args.name, args.dest, args.manifests, quiet=args.quiet, retries=args.retries)
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
