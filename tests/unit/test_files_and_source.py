"""Folders, file names and quotas of the files API (files.py), what an uploaded artifact may
hold (source.py), and who sees which log lines (logsplit.py)."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from qiskit_serverless_operator import files, source
from qiskit_serverless_operator.runtime import logsplit

pytestmark = pytest.mark.unit


def test_folders_are_laid_out_per_namespace_user_provider_and_function() -> None:
    user = "system:serviceaccount:team-a:alice"
    own = files.user_folder("team-a", user, None, "ignored")
    assert own.startswith("files/team-a/users/") and own.endswith("/")
    assert files.user_folder("team-a", user, "acme", "fn") == f"{own}acme/fn/"
    assert files.provider_folder("team-a", "acme", "fn") == "files/team-a/providers/acme/fn/"
    # A user name with '/' (OIDC subjects may have one) is still one path segment, and two
    # names that differ only in unsafe characters get different folders.
    odd = files.key_part("https://issuer/sub#1")
    assert "/" not in odd and odd != files.key_part("https://issuer/sub#2")
    assert files.key_part("alice") == "alice"
    assert files.key_part("..") != ".."


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "required"),
        ("../x", "names a folder"),
        ("a/b.txt", "names a folder"),
        ("a\\b.txt", "names a folder"),
        ("..", "not a file name"),
        ("..hidden", "not a file name"),
        ("bad\nname", "control characters"),
        ("x" * 300, "at most 255"),
    ],
)
def test_bad_file_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(files.FileNameError, match=why):
        files.check_name(name)


def test_good_file_names_pass() -> None:
    for name in ("data.h5", ".env", "résultats 2026.json", "a-b_c.tar.gz"):
        assert files.check_name(name) == name


def test_quotas_count_the_folder_without_the_file_replaced() -> None:
    limits = files.Limits(max_file_bytes=100, quota_bytes=250)
    present = [("a", 100), ("b", 100)]
    files.check_quota(limits, present, "a", 100, "/data")  # replaces a: 200 in all
    files.check_quota(limits, present, "c", 50, "/data")
    with pytest.raises(files.QuotaError, match="over the 100 bytes a file may hold"):
        files.check_quota(limits, present, "c", 101, "/data")
    with pytest.raises(files.QuotaError, match=r"/data holds 200 bytes.*quota of 250"):
        files.check_quota(limits, present, "c", 51, "/data")


def _tar(entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """entries: (name, link target or None, content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, link, content in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link.decode()
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_an_artifact_is_read_as_its_regular_files() -> None:
    data = _tar(
        [
            ("./main.py", None, b"print(1)\n"),
            ("pkg/util.py", None, b"X = 1\n"),
            ("__pycache__/main.cpython-311.pyc", None, b"\x00"),
        ]
    )
    members = source.tar_members(data)
    assert members == [("main.py", b"print(1)\n"), ("pkg/util.py", b"X = 1\n")]
    assert source.inline_files(members, "main.py") == {
        "main.py": "print(1)\n",
        "pkg/util.py": "X = 1\n",
    }


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([("../../etc/passwd", None, b"x")], "outside its folder"),
        ([("/etc/passwd", None, b"x")], "outside its folder"),
        ([("link", b"/etc/passwd", b"")], "not a regular file"),
    ],
)
def test_an_artifact_that_escapes_its_folder_is_refused(entries, why: str) -> None:
    with pytest.raises(source.SourceError, match=why):
        source.tar_members(_tar(entries))


def test_not_a_tar_and_a_missing_entrypoint_say_so() -> None:
    with pytest.raises(source.SourceError, match="not a tar archive"):
        source.tar_members(b"PK\x03\x04 a zip file")
    with pytest.raises(source.SourceError, match=r"entrypoint .main\.py. is not in the artifact"):
        source.inline_files([("other.py", b"")], "main.py")


def test_binary_or_big_folders_go_as_a_reproducible_archive() -> None:
    with pytest.raises(source.NeedsArchive):
        source.inline_files([("main.py", b"print(1)"), ("w.bin", b"\xff\xfe")], "main.py")
    big = [("main.py", b"x" * (source.MAX_INLINE_SOURCE_BYTES + 1))]
    with pytest.raises(source.NeedsArchive):
        source.inline_files(big, "main.py")
    members = [("main.py", b"print(1)\n"), ("w.bin", b"\xff\xfe")]
    first, digest = source.pack(members)
    assert source.pack(members) == (first, digest)
    # gzip's header carries no timestamp (bytes 4-8): equal folders, equal archives, always.
    assert first[4:8] == b"\x00\x00\x00\x00"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as tar:
        assert tar.getnames() == ["main.py", "w.bin"]


def test_log_lines_for_the_user_and_the_provider() -> None:
    text = "[PUBLIC] step 1\ninternal detail\n[PRIVATE] secret sauce\n[public] done\n"
    assert logsplit.user_view(text, provider_function=True) == "step 1\ndone\n"
    assert logsplit.provider_view(text) == "internal detail\nsecret sauce\n"
    assert logsplit.user_view(text, provider_function=False) == (
        "step 1\ninternal detail\nsecret sauce\ndone\n"
    )
    assert logsplit.user_view("no tags\n", provider_function=True) == ""
    # Only a tag at the start of a line counts.
    assert logsplit.user_view("say [PUBLIC] hi\n", provider_function=True) == ""
