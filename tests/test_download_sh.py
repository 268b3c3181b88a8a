"""download.sh against a real HTTP server on 127.0.0.1: success, resume after a cut, a 404."""

import io
import os
import subprocess
import tarfile
import zipfile

from conftest import REPO


def make_tar(path, folder, files):
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def download(data_dir, base_url, *flags, path=None):
    environment = {
        **os.environ,
        "PATH": path or os.environ["PATH"],
        "DATA_DIR": str(data_dir),
        "IMDB_WIKI_URL": base_url,
        "APPA_URL": base_url,
        "IMDB_CLEAN_URL": base_url,
    }
    return subprocess.run(
        ["bash", str(REPO / "download.sh"), *flags],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def serve_imdb_wiki(root):
    payload = os.urandom(200_000)
    make_tar(root / "imdb_crop.tar", "imdb_crop", {"imdb.mat": b"mat", "00/1.jpg": payload})
    make_tar(root / "wiki_crop.tar", "wiki_crop", {"wiki.mat": b"mat", "01/2.jpg": b"jpg"})
    return payload


def test_downloads_extracts_and_skips_when_done(tmp_path, http_server):
    url, root, _ = http_server
    payload = serve_imdb_wiki(root)
    data = tmp_path / "data"
    first = download(data, url)
    assert first.returncode == 0, first.stderr
    # Each archive counts twice: itself and what it extracts to.
    archives = sum((root / name).stat().st_size for name in ("imdb_crop.tar", "wiki_crop.tar"))
    need = subprocess.run(["numfmt", "--to=iec", str(2 * archives)], capture_output=True, text=True)
    assert f"needs up to {need.stdout.strip()} in {data}" in first.stdout
    assert (data / "imdb_crop" / "00" / "1.jpg").read_bytes() == payload
    assert (data / "wiki_crop" / "wiki.mat").read_bytes() == b"mat"
    assert sorted(p.name for p in data.iterdir()) == ["imdb_crop", "wiki_crop"]
    (root / "imdb_crop.tar").unlink()
    again = download(data, url)
    assert again.returncode == 0 and f"have {data}/imdb_crop" in again.stdout


def test_resumes_after_a_cut_connection(tmp_path, http_server):
    url, root, server = http_server
    payload = serve_imdb_wiki(root)
    server.cut_once.add("/imdb_crop.tar")
    data = tmp_path / "data"
    cut = download(data, url, "--imdb")
    assert cut.returncode != 0 and "run" in cut.stderr and "again to resume" in cut.stderr
    part = data / "imdb_crop.tar.part"
    assert 0 < part.stat().st_size < (root / "imdb_crop.tar").stat().st_size
    assert not (data / "imdb_crop").exists()
    resumed = download(data, url, "--imdb")
    assert resumed.returncode == 0, resumed.stderr
    assert (data / "imdb_crop" / "00" / "1.jpg").read_bytes() == payload
    assert not (data / "wiki_crop").exists()


def test_missing_file_is_one_clear_error(tmp_path, http_server):
    url, _, _ = http_server
    result = download(tmp_path / "data", url, "--wiki")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach {url}/wiki_crop.tar (missing or server down); "
        "check the address or try later"
    ]


def test_appa_zip_and_imdb_clean_csvs(tmp_path, http_server):
    url, root, _ = http_server
    with zipfile.ZipFile(root / "appa-real-release.zip", "w") as archive:
        archive.writestr("appa-real-release/gt_avg_valid.csv", "file_name\n")
    for split in ("train", "valid", "test"):
        for suffix in ("", "_1024"):
            (root / f"imdb_{split}_new{suffix}.csv").write_text(f"filename,{split}\n")
    data = tmp_path / "data"
    result = download(data, url, "--appa", "--imdb-clean")
    assert result.returncode == 0, result.stderr
    assert (data / "appa-real-release" / "gt_avg_valid.csv").read_text() == "file_name\n"
    assert (
        data / "imdb-clean" / "csvs" / "imdb_test_new_1024.csv"
    ).read_text() == "filename,test\n"
    assert not (data / "imdb_crop").exists()


def test_unknown_option(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "download.sh"), "--everything"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "error: unknown option --everything" in result.stderr


def test_too_little_disk_space_stops_before_downloading(tmp_path, http_server):
    """The free space is a fake `df` on PATH: the test never depends on the machine's disk."""
    url, root, _ = http_server
    serve_imdb_wiki(root)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "df").write_text(
        "#!/bin/sh\necho 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
        "echo 'fake 1000 999 1 99% /'\n"
    )
    (tools / "df").chmod(0o755)
    data = tmp_path / "data"
    result = download(data, url, "--imdb", path=f"{tools}:{os.environ['PATH']}")
    assert result.returncode != 0
    assert "error: not enough disk space" in result.stderr.strip().splitlines()[-1]
    assert "1.0K free" in result.stdout
    assert list(data.iterdir()) == []
