"""`gbb data fetch/verify` (pooch, with our resuming downloader) against a local HTTP server that honours Range."""
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import pytest

from pipelines import cli, data

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /genome.fa.gz; records the Range header of each request."""

    requests: list = []
    cut_after: list = []  # byte counts: each of the next responses stops after that many bytes

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        if self.path != "/genome.fa.gz":
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after:
            body = body[: type(self).cut_after.pop(0)]
            self.close_connection = True
        self.wfile.write(body)


@pytest.fixture
def server():
    RangeHandler.requests, RangeHandler.cut_after = [], []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def write_manifest(directory: Path, base_url: str, **file_fields) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if file_fields.get("checksum"):
        file_fields.setdefault("checksum_source", f"{base_url}/md5sum.txt")
    else:
        file_fields.setdefault("no_checksum", "the toy publisher gives none")
    entry = {"url": f"{base_url}/genome.fa.gz", "filename": "genome.fa.gz", **file_fields}
    lines = ["name: toy", "description: a toy genome", "build: toy1", "license: public domain",
             "citation: nobody", "files:", f"  - {json.dumps(entry)}", "postprocess: bgzip it"]
    path = directory / "toy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fetch(manifests: Path, dest: Path, *options) -> int:
    return cli.main(["data", "fetch", "toy", "--dest", str(dest), "--manifests", str(manifests), "--quiet", *options])


def test_fetch_verifies_sha256_and_records_it(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server, checksum=f"sha256:{SHA256}", size=len(PAYLOAD))
    assert fetch(tmp_path / "m", tmp_path / "d") == 0
    assert capsys.readouterr() == ("", "")  # pooch's own log lines went to the log file
    out = tmp_path / "d" / "toy"
    assert (out / "genome.fa.gz").read_bytes() == PAYLOAD
    assert not (out / "genome.fa.gz.part").exists()
    record = json.loads((out / "manifest.json").read_text())["outputs"]["files"]["genome.fa.gz"]
    assert record["sha256"] == SHA256 and record["bytes"] == 102400
    assert record["verified_by"] == "sha256, size" and record["checksum_source"] == f"{server}/md5sum.txt"
    assert (out / "data_fetch.log").exists()
    # A second fetch finds the verified file and downloads nothing.
    assert fetch(tmp_path / "m", tmp_path / "d") == 0
    assert [p for p, _ in RangeHandler.requests].count("/genome.fa.gz") == 1


def test_interrupted_download_resumes_with_range(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server, checksum=f"md5:{MD5}")
    # Every attempt of the first command is cut: it fails, keeping what arrived.
    RangeHandler.cut_after = [30000, 10000]
    assert fetch(tmp_path / "m", tmp_path / "d", "--retries", "1") == 2
    assert "run the same command again to resume" in capsys.readouterr().err
    out = tmp_path / "d" / "toy"
    assert (out / "genome.fa.gz.part").stat().st_size == 40000  # the retry resumed at 30000
    assert not (out / "genome.fa.gz").exists()

    # The next command resumes where it stopped; a cut within it is resumed by pooch's retry.
    RangeHandler.requests, RangeHandler.cut_after = [], [20000]
    assert fetch(tmp_path / "m", tmp_path / "d") == 0
    assert (out / "genome.fa.gz").read_bytes() == PAYLOAD
    assert RangeHandler.requests == [("/genome.fa.gz", "bytes=40000-"), ("/genome.fa.gz", "bytes=60000-")]
    record = json.loads((out / "manifest.json").read_text())["outputs"]["files"]["genome.fa.gz"]
    assert record["checksum"] == f"md5:{MD5}" and record["verified_by"] == "md5"


def test_checksum_mismatch_exits_2_without_final_file(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server, checksum="md5:" + "0" * 32)
    assert fetch(tmp_path / "m", tmp_path / "d", "--retries", "0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the known hash" in err[0]
    assert f"expected md5:{'0' * 32} but got {MD5}" in err[0] and f"published at {server}/md5sum.txt" in err[0]
    out = tmp_path / "d" / "toy"
    assert not (out / "genome.fa.gz").exists() and not (out / "genome.fa.gz.part").exists()
    assert not (out / "manifest.json").exists()


def test_unpublished_checksum_is_verified_by_nothing_and_verify_detects_a_changed_file(tmp_path, server, capsys):
    manifests = write_manifest(tmp_path / "m", server).parent
    assert fetch(manifests, tmp_path / "d") == 0
    record = json.loads((tmp_path / "d" / "toy" / "manifest.json").read_text())["outputs"]["files"]["genome.fa.gz"]
    assert record["verified_by"] == "nothing" and record["no_checksum"] == "the toy publisher gives none"
    assert record["sha256"] == SHA256  # what `gbb data verify` checks later, to see the file is unchanged
    assert "genome.fa.gz is unverified: the toy publisher gives none" in (
        tmp_path / "d" / "toy" / "data_fetch.log").read_text()
    verify = ["data", "verify", "--dest", str(tmp_path / "d"), "--manifests", str(manifests)]
    assert cli.main(verify) == 0
    assert capsys.readouterr().out.strip() == "toy\tgenome.fa.gz\tok"

    with open(tmp_path / "d" / "toy" / "genome.fa.gz", "r+b") as handle:
        handle.write(b"x")
    assert cli.main(verify) == 2
    captured = capsys.readouterr()
    assert f"expected {SHA256}" in captured.out
    assert "1 file(s) failed verification: toy/genome.fa.gz" in captured.err


def test_unknown_data_set_names_the_known_ones(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server)
    assert cli.main(["data", "fetch", "hg1", "--dest", str(tmp_path), "--manifests", str(tmp_path / "m")]) == 2
    assert "unknown data set 'hg1'; known: toy" in capsys.readouterr().err


def test_project_manifests_load_with_provenance():
    datasets = data.available_datasets()
    assert {"hg19", "hg38", "epdnew_hs", "hg38ToHg19_chain", "deepsea_bundle", "narrowpeak_example",
            "clinvar_grch37"} <= set(datasets)
    assert datasets["hg19"].build == "GRCh37" and datasets["hg38"].build == "GRCh38"
    for dataset in datasets.values():
        assert dataset.license and dataset.citation and dataset.description
        for item in dataset.files:
            assert item.url.startswith(("https://", "http://")) and item.url.endswith(item.filename)
            # a pinned checksum names where it is published; a missing one says why
            assert (item.checksum and item.checksum_source.startswith("https://")) or item.no_checksum
    # the publishers' MD5s of the two reference genomes (UCSC md5sum.txt; UCSC gives no SHA-256)
    assert datasets["hg19"].files[0].checksum == "md5:806c02398f5ac5da8ffd6da2d1d5d1a9"
    assert datasets["hg38"].files[0].checksum == "md5:1c9dcaddfa41027f17cd8f7a82c7293b"


def test_a_checksum_without_its_source_or_a_missing_one_without_a_reason_is_refused(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server, checksum=f"md5:{MD5}", checksum_source=None)
    assert fetch(tmp_path / "m", tmp_path / "d") == 2
    assert "pins a checksum but not its checksum_source" in capsys.readouterr().err
    write_manifest(tmp_path / "m", server, no_checksum=None)
    assert fetch(tmp_path / "m", tmp_path / "d") == 2
    assert "has no checksum: say why in no_checksum" in capsys.readouterr().err
