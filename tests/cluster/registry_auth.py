"""A registry that requires a user and password, beside the cluster's open one: Debian's
`docker-registry` with htpasswd authentication on AUTH_REGISTRY (plain HTTP, as the main
one). The test of registry credentials (build pods push with a Secret, job pods pull with
imagePullSecrets) points an operator at it; nothing else uses it, so the cluster's own images
stay on the open registry.
"""

from __future__ import annotations

import base64
import crypt  # bcrypt hashes for htpasswd; deprecated in 3.11, still the stdlib's only one
import json
import secrets
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass

import yaml

from . import components, config, procs
from .config import Paths

COMPONENT = "registry-auth"
USER = "qso-builder"


@dataclass(frozen=True)
class Credentials:
    registry: str
    user: str
    password: str

    def docker_config(self) -> str:
        """A .dockerconfigjson for the registry (the key of a kubernetes.io/dockerconfigjson
        Secret, and what crane reads as config.json)."""
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return json.dumps({"auths": {self.registry: {"auth": auth}}})


def registry_config(paths: Paths) -> str:
    home = paths.state / "registry-auth"
    return yaml.safe_dump(
        {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": str(home / "data")}},
            "auth": {"htpasswd": {"realm": "qso", "path": str(home / "htpasswd")}},
            "http": {"addr": config.AUTH_REGISTRY},
        },
        sort_keys=False,
    )


def start(paths: Paths) -> Credentials:
    """A fresh registry with one user (a new password each time); containerd on the node is
    told it speaks plain HTTP."""
    home = paths.state / "registry-auth"
    shutil.rmtree(home, ignore_errors=True)
    (home / "data").mkdir(parents=True)
    password = secrets.token_urlsafe(18)
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    (home / "htpasswd").write_text(f"{USER}:{hashed}\n")
    (home / "config.yml").write_text(registry_config(paths))
    hosts = paths.state / "containerd" / "certs.d" / config.AUTH_REGISTRY / "hosts.toml"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(components.registry_hosts_toml(config.AUTH_REGISTRY))
    procs.start(paths, COMPONENT, ["docker-registry", "serve", str(home / "config.yml")])
    procs.wait_for(
        lambda: anonymous_status() == 401,
        what="the registry with authentication",
        timeout=60,
        alive=procs.alive(paths, COMPONENT),
    )
    return Credentials(config.AUTH_REGISTRY, USER, password)


def anonymous_status(path: str = "/v2/") -> int:
    """The registry's answer to a request without credentials (401 when it asks for them)."""
    try:
        with urllib.request.urlopen(f"http://{config.AUTH_REGISTRY}{path}", timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def stop(paths: Paths) -> None:
    procs.stop(paths, COMPONENT)
    shutil.rmtree(paths.state / "registry-auth", ignore_errors=True)
