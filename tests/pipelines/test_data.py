"""`gbb data fetch/verify` against a local HTTP server that honours Range requests."""
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
    """Serves PAYLOAD at /genome.fa.gz and an md5sum.txt; records the Range header of each request."""

    requests: list = []
    cut_after: int | None = None  # when set, the next body stops after this many bytes

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        if self.path == "/md5sum.txt":
            body = f"0123456789abcdef0123456789abcdef  other.fa.gz\n{MD5}  genome.fa.gz\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
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
        if type(self).cut_after is not None:
            body, type(self).cut_after = body[: type(self).cut_after], None
            self.close_connection = True
        self.wfile.write(body)


@pytest.fixture
def server():
    RangeHandler.requests, RangeHandler.cut_after = [], None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def write_manifest(directory: Path, base_url: str, **file_fields) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    entry = {"url": f"{base_url}/genome.fa.gz", "filename": "genome.fa.gz", **file_fields}
    lines = ["name: toy", "description: a toy genome", "build: toy1", "license: public domain",
             "citation: nobody", "files:", f"  - {json.dumps(entry)}", "postprocess: bgzip it"]
    path = directory / "toy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fetch(manifests: Path, dest: Path) -> int:
    return cli.main(["data", "fetch", "toy", "--dest", str(dest), "--manifests", str(manifests), "--quiet"])


def test_fetch_verifies_sha256_and_records_it(tmp_path, server):
    write_manifest(tmp_path / "m", server, checksum=f"sha256:{SHA256}", verify="sha256", size=len(PAYLOAD))
    assert fetch(tmp_path / "m", tmp_path / "d") == 0
    out = tmp_path / "d" / "toy"
    assert (out / "genome.fa.gz").read_bytes() == PAYLOAD
    assert not (out / "genome.fa.gz.part").exists()
    record = json.loads((out / "manifest.json").read_text())["outputs"]["files"]["genome.fa.gz"]
    assert record["sha256"] == SHA256 and record["bytes"] == 102400
    assert (out / "data_fetch.log").exists()
    # A second fetch finds the verified file and downloads nothing.
    assert fetch(tmp_path / "m", tmp_path / "d") == 0
    assert [p for p, _ in RangeHandler.requests].count("/genome.fa.gz") == 1


def test_interrupted_download_resumes_with_range(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server, checksum_url=f"{server}/md5sum.txt", verify="md5")
    RangeHandler.cut_after = 30000
    assert fetch(tmp_path / "m", tmp_path / "d") == 2
    assert "run the same command again to resume" in capsys.readouterr().err
    out = tmp_path / "d" / "toy"
    assert (out / "genome.fa.gz.part").stat().st_size == 30000
    assert not (out / "genome.fa.gz").exists()

    assert fetch(tmp_path / "m", tmp_path / "d") == 0
    assert (out / "genome.fa.gz").read_bytes() == PAYLOAD
    assert ("/genome.fa.gz", "bytes=30000-") in RangeHandler.requests
    record = json.loads((out / "manifest.json").read_text())["outputs"]["files"]["genome.fa.gz"]
    assert record["md5"] == MD5 and record["checksum_source"] == f"{server}/md5sum.txt"


def test_checksum_mismatch_exits_2_without_final_file(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server, checksum="md5:" + "0" * 32, verify="md5")
    assert fetch(tmp_path / "m", tmp_path / "d") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"md5 {MD5}, expected {'0' * 32}" in err[0]
    out = tmp_path / "d" / "toy"
    assert not (out / "genome.fa.gz").exists() and not (out / "genome.fa.gz.part").exists()
    assert not (out / "manifest.json").exists()


def test_verify_size_only_detects_a_changed_file(tmp_path, server, capsys):
    manifests = write_manifest(tmp_path / "m", server, verify="size-only").parent
    assert fetch(manifests, tmp_path / "d") == 0
    verify = ["data", "verify", "--dest", str(tmp_path / "d"), "--manifests", str(manifests)]
    assert cli.main(verify) == 0
    assert capsys.readouterr().out.strip() == "toy\tgenome.fa.gz\tok"

    with open(tmp_path / "d" / "toy" / "genome.fa.gz", "ab") as handle:
        handle.write(b"x")
    assert cli.main(verify) == 2
    captured = capsys.readouterr()
    assert "size 102401 bytes, expected 102400" in captured.out
    assert "1 file(s) failed verification: toy/genome.fa.gz" in captured.err


def test_unknown_data_set_names_the_known_ones(tmp_path, server, capsys):
    write_manifest(tmp_path / "m", server, verify="size-only")
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
            assert item.verify == "size-only" or item.checksum or item.checksum_url
