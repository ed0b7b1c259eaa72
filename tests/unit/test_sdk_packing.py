"""How the SDK packs a program folder: inline text, or a reproducible archive, or a clear no."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from qiskit_serverless import QiskitFunction
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator.client import kubernetes_client as kc


def _program(folder) -> QiskitFunction:
    return QiskitFunction(title="p", entrypoint="main.py", working_dir=str(folder))


def test_small_text_folders_go_inline_and_big_or_binary_ones_need_an_archive(tmp_path):
    (tmp_path / "main.py").write_text("print(1)\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x00\x01")
    assert kc.read_program_files(_program(tmp_path)) == {"main.py": "print(1)\n"}
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(kc.NeedsArchive):
        kc.read_program_files(_program(tmp_path))


def test_archives_are_reproducible_and_hold_the_folder(tmp_path):
    (tmp_path / "main.py").write_text("print(1)\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "data.bin").write_bytes(os.urandom(1000))
    first, sha = kc.pack_program(_program(tmp_path))
    os.utime(tmp_path / "main.py", (1, 1))  # a new mtime must not change the archive
    again, sha_again = kc.pack_program(_program(tmp_path))
    assert (first, sha) == (again, sha_again)
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert sorted(tar.getnames()) == ["main.py", "pkg/data.bin"]


def test_a_folder_over_the_archive_limit_is_refused(tmp_path, monkeypatch):
    (tmp_path / "main.py").write_text("print(1)\n")
    (tmp_path / "big.bin").write_bytes(os.urandom(50_000))
    monkeypatch.setattr(kc, "MAX_ARCHIVE_BYTES", 10_000)
    with pytest.raises(QiskitServerlessException, match="over the 10000 limit"):
        kc.pack_program(_program(tmp_path))
