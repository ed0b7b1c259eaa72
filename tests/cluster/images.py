"""OCI images built without a daemon and without pulling from any registry.

- ``pause`` and ``coredns``: one static binary in an otherwise empty image.
- ``runtime``: a Debian rootfs from debootstrap, a venv with the runtime Python
  packages (wheels fetched on the host with the machine's pip settings, then
  installed offline inside the rootfs), a non-root user.

Images are OCI layouts in the cache, tagged by a hash of their inputs, so an
unchanged image is never rebuilt; ``push`` copies a layout into the local
registry with skopeo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from . import config
from .progress import run_with_heartbeat, say

# Bump when the recipe below changes in a way its inputs do not show.
_RUNTIME_RECIPE = "3"
RUNTIME_UID = 1000


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    layout: Path

    @property
    def ref(self) -> str:
        return f"{config.REGISTRY}/qso/{self.name}:{self.tag}"


def _run(argv: list[str | Path], **kwargs) -> None:
    subprocess.run([str(a) for a in argv], check=True, **kwargs)


def _umoci_image(layout: Path, tag: str, bundle: Path) -> None:
    _run(["umoci", "init", "--layout", layout])
    _run(["umoci", "new", "--image", f"{layout}:{tag}"])
    _run(["umoci", "unpack", "--image", f"{layout}:{tag}", bundle])


def _umoci_finish(layout: Path, tag: str, bundle: Path, config_args: list[str]) -> None:
    _run(["umoci", "repack", "--image", f"{layout}:{tag}", bundle])
    _run(["umoci", "config", "--image", f"{layout}:{tag}", *config_args])
    _run(["umoci", "gc", "--layout", layout])


def _file_digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]


def binary_image(paths: config.Paths, name: str, binary: Path, user: str = "") -> Image:
    """An image holding only ``/<binary name>``, its entrypoint, run as ``user`` if given
    (``uid:gid``; a pod with runAsNonRoot refuses an image whose user is root)."""
    tag = _file_digest(name.encode(), binary.read_bytes(), *([user.encode()] if user else []))
    layout = paths.cache / "images" / f"{name}-{tag}"
    if not (layout / ".complete").exists():
        shutil.rmtree(layout, ignore_errors=True)
        bundle = layout.with_name(layout.name + ".bundle")
        shutil.rmtree(bundle, ignore_errors=True)
        _umoci_image(layout, tag, bundle)
        target = bundle / "rootfs" / binary.name
        shutil.copy2(binary, target)
        target.chmod(0o755)
        config_args = ["--config.entrypoint", f"/{binary.name}"]
        if user:
            config_args += ["--config.user", user]
        _umoci_finish(layout, tag, bundle, config_args)
        shutil.rmtree(bundle)
        (layout / ".complete").write_text(tag + "\n")
    return Image(name, tag, layout)


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _debian_mirror() -> str | None:
    """The Debian mirror apt is configured with, so debootstrap uses the same one."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return None


def runtime_package_files() -> list[Path]:
    """The in-pod part of our package (stdlib only), copied into the image's venv."""
    package = config.REPO_ROOT / "operator" / "qiskit_serverless_operator"
    return [
        package / "__init__.py",
        package / "constants.py",
        *sorted((package / "runtime").glob("*.py")),
        *sorted((package / "builder").glob("*.py")),
    ]


def runtime_inputs() -> dict[str, object]:
    runtime_dir = config.IMAGES_DIR / "runtime"
    package = config.REPO_ROOT / "operator"
    return {
        "package": {str(p.relative_to(package)): p.read_text() for p in runtime_package_files()},
        "recipe": _RUNTIME_RECIPE,
        "suite": config.DEBIAN_SUITE,
        "debian": _requirement_lines(runtime_dir / "debian-packages.txt"),
        "requirements": _requirement_lines(runtime_dir / "requirements.txt"),
        "constraints": (config.REPO_ROOT / "requirements" / "constraints.txt").read_text(),
        "uid": RUNTIME_UID,
    }


def runtime_tag() -> str:
    return _file_digest(json.dumps(runtime_inputs(), sort_keys=True).encode())


def _wheelhouse(paths: config.Paths, tag: str, requirements: Path, constraints: Path) -> Path:
    """Wheels for the runtime packages, fetched with the host's own pip configuration."""
    wheels = paths.cache / "wheels" / tag
    if (wheels / ".complete").exists():
        return wheels
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    run_with_heartbeat(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--wheel-dir",
            wheels,
            "-r",
            requirements,
            "-c",
            constraints,
        ],
        what="runtime image: fetching wheels",
        log=paths.cache / "logs" / "runtime-wheels.log",
    )
    (wheels / ".complete").write_text("ok\n")
    return wheels


def runtime_image(paths: config.Paths) -> Image:
    """The runtime base image every job pod starts from (cached by content)."""
    tag = runtime_tag()
    layout = paths.cache / "images" / f"runtime-{tag}"
    image = Image("runtime", tag, layout)
    if (layout / ".complete").exists():
        return image
    inputs = runtime_inputs()
    runtime_dir = config.IMAGES_DIR / "runtime"
    constraints = config.REPO_ROOT / "requirements" / "constraints.txt"
    wheels = _wheelhouse(paths, tag, runtime_dir / "requirements.txt", constraints)

    shutil.rmtree(layout, ignore_errors=True)
    bundle = layout.with_name(layout.name + ".bundle")
    shutil.rmtree(bundle, ignore_errors=True)
    _umoci_image(layout, tag, bundle)
    rootfs = bundle / "rootfs"
    logs = paths.cache / "logs"

    argv: list[str | Path] = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(inputs["debian"]),  # type: ignore[arg-type]
        config.DEBIAN_SUITE,
        rootfs,
    ]
    mirror = _debian_mirror()
    if mirror:
        argv.append(mirror)
    run_with_heartbeat(
        argv, what="runtime image: debootstrap", log=logs / "runtime-debootstrap.log"
    )

    staging = rootfs / "tmp" / "qso-build"
    staging.mkdir(parents=True)
    shutil.copytree(wheels, staging / "wheels")
    shutil.copy2(runtime_dir / "requirements.txt", staging / "requirements.txt")
    shutil.copy2(constraints, staging / "constraints.txt")
    for path in runtime_package_files():
        target = staging / "package" / path.relative_to(config.REPO_ROOT / "operator")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    script = f"""set -eu
python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-index --find-links /tmp/qso-build/wheels \\
    -r /tmp/qso-build/requirements.txt -c /tmp/qso-build/constraints.txt
cp -r /tmp/qso-build/package/qiskit_serverless_operator \
    "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
/opt/venv/bin/python -m compileall -q /opt/venv/lib
groupadd --gid {RUNTIME_UID} qiskit
useradd --uid {RUNTIME_UID} --gid {RUNTIME_UID} --create-home --shell /bin/sh qiskit
apt-get clean
rm -rf /tmp/qso-build /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/*
"""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    run_with_heartbeat(
        ["chroot", rootfs, "/bin/sh", "-c", script],
        what="runtime image: installing Python packages",
        log=logs / "runtime-install.log",
        env=env,
    )
    run_with_heartbeat(
        ["umoci", "repack", "--image", f"{layout}:{tag}", bundle],
        what="runtime image: packing the layer",
        log=logs / "runtime-repack.log",
    )
    path = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    _run(
        [
            "umoci",
            "config",
            "--image",
            f"{layout}:{tag}",
            "--config.env",
            f"PATH={path}",
            "--config.env",
            "PYTHONUNBUFFERED=1",
            "--config.env",
            "LANG=C.UTF-8",
            "--config.env",
            "HOME=/home/qiskit",
            "--config.user",
            f"{RUNTIME_UID}:{RUNTIME_UID}",
            "--config.workingdir",
            "/home/qiskit",
            "--config.entrypoint",
            "/usr/bin/tini",
            "--config.entrypoint",
            "--",
            "--config.cmd",
            "python3",
            "--config.label",
            f"org.opencontainers.image.title=qso-runtime-{tag}",
        ]
    )
    _run(["umoci", "gc", "--layout", layout])
    shutil.rmtree(bundle)
    (layout / ".complete").write_text(tag + "\n")
    return image


def _policy(paths: config.Paths) -> Path:
    # skopeo requires a signature policy; local images from our own layouts are unsigned.
    policy = paths.state / "containers-policy.json"
    if not policy.exists():
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return policy


def push(paths: config.Paths, image: Image) -> None:
    say(f"pushing {image.ref}")
    _run(
        [
            "skopeo",
            "--policy",
            _policy(paths),
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{image.layout}:{image.tag}",
            f"docker://{image.ref}",
        ],
        env={**os.environ},
    )


def _in_registry(crane: Path, ref: str) -> bool:
    return (
        subprocess.run([str(crane), "digest", ref, "--insecure"], capture_output=True).returncode
        == 0
    )


def _crane_append(crane: Path, base: Image, layers: list[Path], image: Image) -> None:
    """Push ``base`` + ``layers`` as ``image`` (registry to registry, no daemon)."""
    say(f"pushing {image.ref}")
    argv: list[str | Path] = [crane, "append", "--base", base.ref]
    for layer in layers:
        argv += ["--new_layer", layer]
    _run([*argv, "--new_tag", image.ref, "--insecure"], capture_output=True)


def builder_image(paths: config.Paths, runtime: Image, crane: Path) -> Image:
    """The function builder: the runtime base image plus ``crane`` (images/builder/).

    Made in the registry by appending one layer with crane itself, so it costs seconds.
    """
    tag = _file_digest(runtime.tag.encode(), crane.read_bytes())
    image = Image("builder", tag, paths.cache / "images" / f"builder-{tag}")
    if _in_registry(crane, image.ref):
        return image
    work = paths.cache / "images" / f"builder-{tag}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    layer = work / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        info = tar.gettarinfo(str(crane), arcname="usr/local/bin/crane")
        info.uid = info.gid = 0
        info.mode = 0o755
        with crane.open("rb") as handle:
            tar.addfile(info, handle)
    _crane_append(crane, runtime, [layer], image)
    shutil.rmtree(work)
    return image


# The runtime base is Debian bookworm's Python (config.DEBIAN_SUITE); its venv's site-packages.
_RUNTIME_SITE_PACKAGES = "opt/venv/lib/python3.11/site-packages"


def _tar_tree(tar: tarfile.TarFile, source: Path, arcname: str) -> None:
    """Add ``source`` as root-owned, world-readable entries, in a stable order."""
    for path in sorted([source, *source.rglob("*")]):
        if "__pycache__" in path.parts:
            continue
        name = arcname + ("" if path == source else "/" + path.relative_to(source).as_posix())
        info = tar.gettarinfo(str(path), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        if path.is_dir():
            info.mode = 0o755
            tar.addfile(info)
        else:
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)


def operator_package_files() -> list[Path]:
    package = config.REPO_ROOT / "operator" / "qiskit_serverless_operator"
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def _operator_deps_layer(paths: config.Paths) -> Path:
    """images/operator/requirements.txt installed for the image's Python, as one layer tar."""
    requirements = config.IMAGES_DIR / "operator" / "requirements.txt"
    constraints = config.REPO_ROOT / "requirements" / "constraints.txt"
    key = _file_digest(
        b"operator-deps-1",
        requirements.read_bytes(),
        constraints.read_bytes(),
        os.uname().machine.encode(),
    )
    layer = paths.cache / "layers" / f"operator-deps-{key}.tar"
    if layer.exists():
        return layer
    staging = layer.with_suffix(".staging")
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / _RUNTIME_SITE_PACKAGES
    site.mkdir(parents=True)
    # Wheels for the image's interpreter (CPython 3.11, glibc 2.36), whatever Python runs this.
    run_with_heartbeat(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--target",
            site,
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            "3.11",
            "--abi",
            "cp311",
            # Every manylinux tag glibc 2.36 (bookworm) runs; older pips do not expand one.
            *(
                arg
                for glibc in range(36, 16, -1)
                for arg in ("--platform", f"manylinux_2_{glibc}_{os.uname().machine}")
            ),
            "--platform",
            f"manylinux2014_{os.uname().machine}",
            "--no-compile",
            "-r",
            requirements,
            "-c",
            constraints,
        ],
        what="operator image: fetching its Python packages",
        log=paths.cache / "logs" / "operator-deps.log",
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts point at the host's Python
    layer.parent.mkdir(parents=True, exist_ok=True)
    partial = layer.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        _tar_tree(tar, staging / "opt", "opt")
    partial.rename(layer)
    shutil.rmtree(staging)
    return layer


def operator_image(paths: config.Paths, runtime: Image, crane: Path) -> Image:
    """The operator (images/operator/): the runtime base + its packages + the whole package.

    Two layers appended with crane, so an operator code change re-pushes only the small one.
    """
    deps = _operator_deps_layer(paths)
    package_root = config.REPO_ROOT / "operator"
    files = operator_package_files()
    tag = _file_digest(
        runtime.tag.encode(),
        deps.name.encode(),
        *(p.relative_to(package_root).as_posix().encode() + p.read_bytes() for p in files),
    )
    image = Image("operator", tag, paths.cache / "images" / f"operator-{tag}")
    if _in_registry(crane, image.ref):
        return image
    work = paths.cache / "images" / f"operator-{tag}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    package_layer = work / "package.tar"
    with tarfile.open(package_layer, "w") as tar:
        for directory in ("opt", "opt/venv", "opt/venv/lib", "opt/venv/lib/python3.11"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        _tar_tree(
            tar,
            package_root / "qiskit_serverless_operator",
            f"{_RUNTIME_SITE_PACKAGES}/qiskit_serverless_operator",
        )
    _crane_append(crane, runtime, [deps, package_layer], image)
    shutil.rmtree(work)
    return image
