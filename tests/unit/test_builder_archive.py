"""The builder unpacks a function's source archive: every member inside the folder, or a
clear refusal naming the one that is not (never a path quietly tidied up)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from qiskit_serverless_operator.builder.__main__ import fetch_archive


def _archive(tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> tuple[str, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    path = tmp_path / "upload.tar.gz"
    path.write_bytes(raw.getvalue())
    return path.as_uri(), hashlib.sha256(raw.getvalue()).hexdigest()


def test_members_keep_their_names(tmp_path: Path) -> None:
    url, sha = _archive(
        tmp_path, [("./main.py", b"print(1)\n"), (".env", b"A=1\n"), ("a/b.py", b"")]
    )
    source = fetch_archive(url, sha, tmp_path / "work")
    assert sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()) == [
        ".env",
        "a/b.py",
        "main.py",
    ]


@pytest.mark.parametrize("name", ["../../escape.py", "/tmp/escape.py", "a/../../escape.py"])
def test_a_member_outside_the_folder_is_refused_by_name(tmp_path: Path, name: str) -> None:
    url, sha = _archive(tmp_path, [("main.py", b""), (name, b"print('escaped')\n")])
    with pytest.raises(ValueError, match="outside its folder") as info:
        fetch_archive(url, sha, tmp_path / "work")
    assert repr(name) in str(info.value)
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "work" / "escape.py").exists()


def test_links_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("secrets.py")
    link.type, link.linkname = tarfile.SYMTYPE, "/var/run/secrets/token"
    url, sha = _archive(tmp_path, [("main.py", b""), link])
    with pytest.raises(ValueError, match="not a regular file"):
        fetch_archive(url, sha, tmp_path / "work")


def test_a_changed_archive_is_refused(tmp_path: Path) -> None:
    url, _ = _archive(tmp_path, [("main.py", b"")])
    with pytest.raises(ValueError, match="sha256"):
        fetch_archive(url, "0" * 64, tmp_path / "work")
