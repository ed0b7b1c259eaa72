"""PostgreSQL on the node: the job-history archive's database (Debian's postgresql-15).

One server per cluster, its data in the state folder (so ``down`` removes it with the rest),
run as the ``postgres`` system user (the server refuses root) and listening on the node
address only, where pods and the host reach it. Role ``qso``, with a password made once per
cluster, owns database ``qiskit_serverless``. Command lines and files are pure functions, so
unit tests check them without starting anything; ``start`` and ``stop`` are what ``up``,
``down`` and the fault tests (tests/faults.py) call.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

from . import config, procs
from .config import Paths

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
COMPONENT = "postgresql"
SYSTEM_USER = "postgres"
ROLE = "qso"
DATABASE = "qiskit_serverless"
CREATECLUSTER_CONF = Path("/etc/postgresql-common/createcluster.conf")
# SIGTERM is a "smart" shutdown, which waits for every client to leave (the operator keeps
# connections open); SIGINT is the "fast" one: sessions end, a clean checkpoint is written.
STOP_SIGNAL = signal.SIGINT

_CREATE_MAIN = re.compile(r"^[ \t]*#?[ \t]*create_main_cluster[ \t]*=.*$", re.MULTILINE)


# --------------------------------------------------------------------------- pure


def data_dir(paths: Paths) -> Path:
    return paths.state / "postgres"


def socket_dir(paths: Paths) -> Path:
    """The unix socket's folder: the default, /var/run/postgresql, is Debian's own cluster's."""
    return paths.state / "postgres-run"


def password_file(paths: Paths) -> Path:
    return paths.state / "postgres-password"


def createcluster_conf(existing: str) -> str:
    """``existing`` with ``create_main_cluster = false``: installing postgresql-15 then makes
    and starts no cluster of its own (on port 5432, which ours takes on the node address)."""
    setting = "create_main_cluster = false"
    if _CREATE_MAIN.search(existing):
        return _CREATE_MAIN.sub(setting, existing)
    separator = "\n" if existing and not existing.endswith("\n") else ""
    return f"{existing}{separator}{setting}\n"


def initdb_argv(paths: Paths) -> list[str]:
    return [
        str(BIN_DIR / "initdb"),
        f"--pgdata={data_dir(paths)}",
        "--username=postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
    ]


def hba_conf(host: str = config.NODE_IP) -> str:
    """Passwords over TCP from the cluster's networks (every node's pods and the host, which
    reach the node address); trust on the unix socket, whose folder only postgres and root
    may enter. A listen address outside those networks (a scratch server) is let in too."""
    networks = [config.CLUSTER_CIDR]
    if ipaddress.ip_address(host) not in ipaddress.ip_network(config.CLUSTER_CIDR):
        networks.append(f"{host}/32")
    lines = ["# TYPE  DATABASE  USER  ADDRESS  METHOD", "local all all trust"]
    lines += [f"host all all {network} scram-sha-256" for network in networks]
    return "\n".join(lines) + "\n"


def server_argv(
    paths: Paths, host: str = config.NODE_IP, port: int = config.POSTGRES_PORT
) -> list[str]:
    settings = {
        "listen_addresses": host,
        "port": str(port),
        "unix_socket_directories": str(socket_dir(paths)),
        "shared_buffers": "128MB",
        "max_connections": "100",
        # A throwaway test cluster, as etcd's --unsafe-no-fsync: durability across a machine
        # crash is not a goal, and fsync latency on a shared disk would dominate writes.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    argv = [str(BIN_DIR / "postgres"), "-D", str(data_dir(paths))]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def ready_argv(host: str = config.NODE_IP, port: int = config.POSTGRES_PORT) -> list[str]:
    return [str(BIN_DIR / "pg_isready"), "--quiet", f"--host={host}", f"--port={port}"]


def setup_sql(password: str) -> str:
    """psql input that makes (or keeps) the role and its database; run at every start."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", password):
        raise ValueError("the archive's password must be URL-safe (it sits in the DSN)")
    return (
        f"SELECT 'CREATE ROLE {ROLE}' "
        f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}')\n\\gexec\n"
        f"ALTER ROLE {ROLE} WITH LOGIN PASSWORD '{password}';\n"
        f"SELECT 'CREATE DATABASE {DATABASE} OWNER {ROLE}' "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\n\\gexec\n"
    )


def psql_argv(paths: Paths, port: int = config.POSTGRES_PORT) -> list[str]:
    """psql as the superuser over the unix socket (its file name holds the port)."""
    return [
        str(BIN_DIR / "psql"),
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        f"--host={socket_dir(paths)}",
        f"--port={port}",
        "--username=postgres",
        "--dbname=postgres",
    ]


def dsn(password: str, host: str = config.NODE_IP, port: int = config.POSTGRES_PORT) -> str:
    return f"postgresql://{ROLE}:{password}@{host}:{port}/{DATABASE}"


def archive_info(
    password: str, host: str = config.NODE_IP, port: int = config.POSTGRES_PORT
) -> dict:
    """cluster.json's ``archive``: the DSN and its parts."""
    return {
        "dsn": dsn(password, host, port),
        "host": host,
        "port": port,
        "user": ROLE,
        "password": password,
        "database": DATABASE,
    }


# --------------------------------------------------------------------------- host


def prevent_default_cluster(path: Path | None = None) -> None:
    """Before apt installs postgresql-15: no ``main`` cluster, other settings kept."""
    path = path or CREATECLUSTER_CONF
    existing = path.read_text() if path.exists() else ""
    wanted = createcluster_conf(existing)
    if wanted != existing:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted)


def password(paths: Paths) -> str:
    """The role's password, made once per cluster and kept with its state (URL-safe)."""
    path = password_file(paths)
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def _give_to_postgres(path: Path, mode: int) -> None:
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)


def prepare(paths: Paths, host: str = config.NODE_IP) -> None:
    """The data folder (initdb once: a warm ``up`` keeps the data) and pg_hba.conf."""
    state_mode = paths.state.stat().st_mode
    if not state_mode & 0o001:
        # postgres must pass through the state folder to reach its own folders in it.
        paths.state.chmod(state_mode | 0o001)
    for directory in (data_dir(paths), socket_dir(paths)):
        directory.mkdir(parents=True, exist_ok=True)
        _give_to_postgres(directory, 0o700)
    if not (data_dir(paths) / "PG_VERSION").exists():
        result = subprocess.run(
            initdb_argv(paths),
            capture_output=True,
            text=True,
            cwd=data_dir(paths),
            **procs.user_args(SYSTEM_USER),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
    hba = data_dir(paths) / "pg_hba.conf"
    hba.write_text(hba_conf(host))
    _give_to_postgres(hba, 0o600)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _await_reaped(paths: Paths, timeout: float = 10.0) -> None:
    """A server just killed lingers as a zombie until its parent reaps it (init, about a
    second later, when the process that started it is gone); until then a new server
    refuses the old one's postmaster.pid as another live server's."""
    try:
        pid = int((data_dir(paths) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while _zombie(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # ours to reap, if this process started it
        time.sleep(0.1)


def ready(host: str = config.NODE_IP, port: int = config.POSTGRES_PORT) -> bool:
    return subprocess.run(ready_argv(host, port), capture_output=True, timeout=10).returncode == 0


def _ensure_role_and_database(paths: Paths, secret: str, port: int) -> None:
    result = subprocess.run(
        psql_argv(paths, port),
        input=setup_sql(secret),
        capture_output=True,
        text=True,
        cwd=data_dir(paths),
        timeout=60,
        **procs.user_args(SYSTEM_USER),
    )
    if result.returncode != 0:
        raise RuntimeError(f"making role {ROLE} and database {DATABASE} failed: {result.stderr}")


def start(
    paths: Paths,
    host: str = config.NODE_IP,
    port: int = config.POSTGRES_PORT,
    timeout: float = 60.0,
) -> dict:
    """Start the server unless it runs (initdb first on a new cluster), wait until it accepts
    connections, make the role and database if missing; returns cluster.json's ``archive``."""
    prepare(paths, host)
    if procs.running_pid(paths, COMPONENT) is None:
        _await_reaped(paths)
    procs.start(
        paths, COMPONENT, server_argv(paths, host, port), cwd=data_dir(paths), user=SYSTEM_USER
    )
    procs.wait_for(
        lambda: ready(host, port),
        what=f"PostgreSQL on {host}:{port}",
        timeout=timeout,
        alive=procs.alive(paths, COMPONENT),
    )
    secret = password(paths)
    _ensure_role_and_database(paths, secret, port)
    return archive_info(secret, host, port)


def stop(paths: Paths, grace: float = 15.0) -> None:
    """A fast shutdown (clients are disconnected), SIGKILL after ``grace`` seconds."""
    procs.stop(paths, COMPONENT, grace=grace, sig=STOP_SIGNAL)
