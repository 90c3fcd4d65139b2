"""The data folder and `sampleflow data fetch`: a real HTTP download from a server on 127.0.0.1."""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from sampleflow.cli import main
from sampleflow.targets import data

SHARED = Path(os.environ.get("SAMPLEFLOW_DATA", ""))
NAME = "mos10_locs_d2.npy"


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/'served' over HTTP on an ephemeral loopback port; yields (folder, base_url, log)."""
    folder = tmp_path / "served"
    folder.mkdir()
    log = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", log
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    d = tmp_path / "data"
    monkeypatch.setenv("SAMPLEFLOW_DATA", str(d))
    monkeypatch.delenv("SAMPLEFLOW_DATA_URL", raising=False)
    return d


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMPLEFLOW_DATA", str(tmp_path / "x"))
    assert data.data_dir() == tmp_path / "x"
    monkeypatch.delenv("SAMPLEFLOW_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.data_dir() == tmp_path / "cache" / "sampleflow" / "data"


@pytest.mark.skipif(not (SHARED / NAME).exists(), reason="shared data folder not available")
def test_every_shared_file_passes_its_checksum():
    for name in data.FILES:
        assert data.path(name) == SHARED / name


def test_missing_file_says_how_to_get_it(empty_data_dir):
    with pytest.raises(data.DataFileError, match=f"not in the data folder.*sampleflow data fetch {NAME}"):
        data.path(NAME)
    with pytest.raises(data.DataFileError, match="unknown data file 'nope.npy'"):
        data.path("nope.npy")


@pytest.mark.skipif(not (SHARED / NAME).exists(), reason="shared data folder not available")
def test_fetch_downloads_and_checks(server, empty_data_dir, capsys):
    folder, url, log = server
    shutil.copy(SHARED / NAME, folder / NAME)
    assert main(["data", "fetch", NAME, "--base-url", url]) == 0
    assert f"/{NAME}" in log
    got = empty_data_dir / NAME
    assert got.read_bytes() == (SHARED / NAME).read_bytes()
    assert data.load_array(NAME).shape == (10, 2)
    # a second fetch finds the file and does not download again
    n = len(log)
    data.fetch(NAME, base_url=url)
    assert len(log) == n
    # the folder holds only the file: no partial downloads left
    assert [p.name for p in empty_data_dir.iterdir()] == [NAME]


@pytest.mark.skipif(not (SHARED / NAME).exists(), reason="shared data folder not available")
def test_corrupt_download_is_rejected_and_not_kept(server, empty_data_dir):
    folder, url, _ = server
    raw = bytearray((SHARED / NAME).read_bytes())
    raw[-1] ^= 0xFF
    (folder / NAME).write_bytes(bytes(raw))
    with pytest.raises(data.DataFileError, match="failed its check.*SHA-256"):
        data.fetch(NAME, base_url=url)
    assert not empty_data_dir.exists() or list(empty_data_dir.iterdir()) == []


def test_http_error_is_clear(server, empty_data_dir, capsys):
    _, url, _ = server
    assert main(["data", "fetch", NAME, "--base-url", url]) == 2
    assert "404" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / NAME).exists(), reason="shared data folder not available")
def test_corrupt_local_file_is_detected(empty_data_dir):
    empty_data_dir.mkdir()
    raw = bytearray((SHARED / NAME).read_bytes())
    raw[-1] ^= 0xFF
    (empty_data_dir / NAME).write_bytes(bytes(raw))
    with pytest.raises(data.DataFileError, match="fails its SHA-256 check"):
        data.path(NAME)


def test_file_without_public_source_needs_a_mirror(empty_data_dir):
    with pytest.raises(data.DataFileError, match="no public byte-identical source"):
        data.fetch("mog40_means_d2.npy")
