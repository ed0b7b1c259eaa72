"""python -m qiskit_serverless_operator.builder: build one QiskitFunction image, daemonless.

Runs in a build Job's pod started from the builder image (the runtime base image plus
``crane``). Steps, each failing with one clear line and its own exit code:

1. compile every Python file of the source (a syntax error names file and line), exit 10;
2. ``pip install --prefix`` the dependencies with the base image's own pip, so only what the
   base image lacks lands in the new layer; pip's error line on failure, exit 11;
3. put the source at /function in the layer and pack the layer as a tar;
4. ``crane append`` the layer onto the base image and push it as the target tag, exit 12;
5. write the pushed image, pinned by digest, to the termination message for the operator.

No Docker daemon, no privileges, no root: the registry does the assembling.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

EXIT_SYNTAX, EXIT_PIP, EXIT_PUSH = 10, 11, 12
TERMINATION_LOG = Path(os.environ.get("QSO_TERMINATION_LOG", "/dev/termination-log"))


def say(message: str) -> None:
    print(f"[build] {message}", flush=True)


def fail(code: int, message: str) -> int:
    say(f"FAILED: {message}")
    with contextlib.suppress(OSError):  # outside a pod there is no termination log
        TERMINATION_LOG.write_text(json.dumps({"error": message})[:4000])
    return code


def _hidden(relative: str) -> bool:
    """ConfigMap volumes keep their real files in ``..<timestamp>/`` behind the visible links."""
    return any(part.startswith("..") for part in relative.split("/"))


def check_syntax(source: Path) -> str | None:
    for path in sorted(source.rglob("*.py")):
        name = path.relative_to(source).as_posix()
        if _hidden(name):
            continue
        try:
            compile(path.read_bytes(), name, "exec", dont_inherit=True)
        except SyntaxError as exc:
            text = (exc.text or "").strip()
            return f"{type(exc).__name__} in {name} line {exc.lineno}: {exc.msg}" + (
                f": {text}" if text else ""
            )
    return None


def pip_install(requirements: list[str], prefix: Path) -> str | None:
    if not requirements:
        return None
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--prefix",
        str(prefix),
        *requirements,
    ]
    say("pip install " + " ".join(requirements))
    proc = subprocess.run(argv, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode == 0:
        return None
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    return errors[0] if errors else f"pip exited with {proc.returncode}"


def pack(layer: Path, tar_path: Path) -> None:
    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0  # the same inputs give the same layer
        return info

    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(layer.rglob("*")):
            tar.add(
                path, arcname=path.relative_to(layer).as_posix(), recursive=False, filter=normalize
            )


def fetch_archive(url: str, sha256: str, work: Path) -> Path:
    """Download the source archive, check its sha256, unpack regular files and folders only."""
    import hashlib
    import urllib.request

    target = work / "source"
    target.mkdir(parents=True, exist_ok=True)
    data = urllib.request.urlopen(url, timeout=300).read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(f"the source archive's sha256 is {actual}, expected {sha256}")
    archive = work / "source.tar.gz"
    archive.write_bytes(data)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            # Refused, not tidied up: "../x" must not quietly become "x" (nor ".env" "env").
            path = posixpath.normpath(member.name)
            if member.name.startswith("/") or path == ".." or path.startswith("../"):
                raise ValueError(
                    f"the source archive holds a path outside its folder: {member.name!r}"
                )
            name = "" if path == "." else path
            if member.isdir():
                (target / name).mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                extracted = tar.extractfile(member)
                assert extracted is not None
                (target / name).write_bytes(extracted.read())
            else:
                raise ValueError(
                    f"the source archive holds {member.name!r}, which is not a regular file "
                    "(links and devices are not allowed)"
                )
    return target


def crane(*args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--insecure"] if os.environ.get("QSO_REGISTRY_INSECURE") == "true" else []
    return subprocess.run(["crane", *args, *flags], capture_output=True, text=True)


def main() -> int:
    source = Path(os.environ.get("QSO_BUILD_SOURCE", "/source"))
    work = Path(os.environ.get("QSO_BUILD_WORK", "/work"))
    base = os.environ["QSO_BASE_IMAGE"]
    target = os.environ["QSO_TARGET_IMAGE"]
    requirements = json.loads(os.environ.get("QSO_DEPENDENCIES", "[]"))

    archive_url = os.environ.get("QSO_SOURCE_ARCHIVE_URL")
    if archive_url:
        say("fetching the source archive")
        source = fetch_archive(archive_url, os.environ["QSO_SOURCE_ARCHIVE_SHA256"], work)
    entrypoint = os.environ.get("QSO_ENTRYPOINT")
    if entrypoint and not (source / entrypoint).is_file():
        return fail(EXIT_SYNTAX, f"entrypoint {entrypoint!r} is not in the function's source")
    say(f"checking the source in {source}")
    error = check_syntax(source)
    if error:
        return fail(EXIT_SYNTAX, error)

    layer = work / "layer"
    venv = Path(sys.prefix)  # the base image's venv: its pip knows what is already there
    error = pip_install(requirements, layer / venv.relative_to("/"))
    if error:
        return fail(EXIT_PIP, error)

    shutil.copytree(
        source, layer / "function", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    tar_path = work / "layer.tar"
    pack(layer, tar_path)
    say(f"layer: {tar_path.stat().st_size} bytes; appending to {base}")
    pushed = crane("append", "--base", base, "--new_layer", str(tar_path), "--new_tag", target)
    if pushed.returncode != 0:
        detail = (pushed.stderr.strip().splitlines() or ["crane failed"])[-1]
        return fail(EXIT_PUSH, f"pushing {target} failed: {detail}")
    digest = crane("digest", target)
    if digest.returncode != 0:
        return fail(EXIT_PUSH, f"reading the digest of {target} failed: {digest.stderr.strip()}")
    image = f"{target.rsplit(':', 1)[0]}@{digest.stdout.strip()}"
    say(f"pushed {image}")
    TERMINATION_LOG.write_text(json.dumps({"image": image}))
    return 0


def run() -> int:
    try:
        return main()
    except Exception as exc:  # the operator reads this instead of a bare exit code
        return fail(1, f"builder error: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(run())
