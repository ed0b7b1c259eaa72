"""The archive's PostgreSQL in the local cluster (tests/cluster/postgres.py): its command
lines and files, the DSN `up` records, and the install that makes no cluster of its own."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.cluster import cluster, config, postgres
from tests.cluster.config import Paths

PATHS = Paths(cache=Path("/c"), state=Path("/s"))

DEBIAN_TEMPLATE = """# Default values for pg_createcluster(8)

# Create a "main" cluster when a new postgresql-x.y server package is installed
#create_main_cluster = true

# Default start.conf value, must be one of "auto", "manual", and "disabled".
#start_conf = 'auto'
"""


def _settings(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_createcluster_conf_turns_off_the_main_cluster_and_keeps_the_rest():
    conf = postgres.createcluster_conf(DEBIAN_TEMPLATE)
    assert "create_main_cluster = false" in conf.splitlines()
    assert "create_main_cluster = true" not in conf
    assert "#start_conf = 'auto'" in conf
    assert postgres.createcluster_conf(conf) == conf
    assert postgres.createcluster_conf("") == "create_main_cluster = false\n"
    assert postgres.createcluster_conf("ssl = off") == "ssl = off\ncreate_main_cluster = false\n"


def test_prevent_default_cluster_writes_the_file_before_the_package_exists(tmp_path):
    path = tmp_path / "postgresql-common" / "createcluster.conf"
    postgres.prevent_default_cluster(path)
    assert path.read_text() == "create_main_cluster = false\n"
    path.write_text(DEBIAN_TEMPLATE)
    postgres.prevent_default_cluster(path)
    assert path.read_text() == postgres.createcluster_conf(DEBIAN_TEMPLATE)


def test_the_server_listens_on_the_node_address_only_with_its_files_in_the_state():
    argv = postgres.server_argv(PATHS)
    assert argv[:3] == [str(postgres.BIN_DIR / "postgres"), "-D", "/s/postgres"]
    settings = _settings(argv)
    assert settings["listen_addresses"] == config.NODE_IP
    assert settings["port"] == str(config.POSTGRES_PORT) == "5432"
    assert settings["unix_socket_directories"] == "/s/postgres-run"
    assert settings["fsync"] == "off"  # a test cluster, as etcd's --unsafe-no-fsync
    scratch = _settings(postgres.server_argv(PATHS, "127.0.0.1", 5498))
    assert (scratch["listen_addresses"], scratch["port"]) == ("127.0.0.1", "5498")
    assert "--pgdata=/s/postgres" in postgres.initdb_argv(PATHS)
    assert "--auth-host=scram-sha-256" in postgres.initdb_argv(PATHS)


def test_hba_wants_passwords_over_tcp_and_trusts_the_socket_only():
    lines = [line.split() for line in postgres.hba_conf().splitlines() if line[:1] != "#"]
    assert ["local", "all", "all", "trust"] in lines
    hosts = [line for line in lines if line[0] == "host"]
    assert hosts == [["host", "all", "all", config.CLUSTER_CIDR, "scram-sha-256"]]
    # Every node's pods and the machine's links to them are in that range.
    for node in (config.NODE0, config.Node(config.MAX_NODES - 1)):
        assert ipaddress.ip_network(node.pod_subnet).subnet_of(
            ipaddress.ip_network(config.CLUSTER_CIDR)
        )
    scratch = postgres.hba_conf("127.0.0.1")
    assert "host all all 127.0.0.1/32 scram-sha-256" in scratch


def test_the_dsn_holds_the_password_unquoted_and_parses_back():
    secret = "Ab-_09" * 5
    info = postgres.archive_info(secret)
    url = urllib.parse.urlsplit(info["dsn"])
    assert (url.scheme, url.hostname, url.port) == ("postgresql", config.NODE_IP, 5432)
    assert (url.username, url.password, url.path) == ("qso", secret, "/qiskit_serverless")
    assert {k: info[k] for k in ("host", "port", "user", "password", "database")} == {
        "host": config.NODE_IP,
        "port": 5432,
        "user": "qso",
        "password": secret,
        "database": "qiskit_serverless",
    }


def test_setup_sql_is_idempotent_and_refuses_a_password_that_needs_quoting():
    sql = postgres.setup_sql("s3cret")
    assert "WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'qso')" in sql
    assert "ALTER ROLE qso WITH LOGIN PASSWORD 's3cret';" in sql
    assert "CREATE DATABASE qiskit_serverless OWNER qso" in sql
    assert sql.count("\\gexec") == 2
    for bad in ("it's", "a b", "x@y", "p/q", ""):
        with pytest.raises(ValueError):
            postgres.setup_sql(bad)


def test_the_password_is_made_once_private_and_url_safe(tmp_path):
    paths = Paths(cache=tmp_path / "c", state=tmp_path / "s")
    first = postgres.password(paths)
    assert postgres.password(paths) == first
    assert postgres.password_file(paths).stat().st_mode & 0o077 == 0
    assert urllib.parse.quote(first, safe="") == first and len(first) >= 24
    postgres.setup_sql(first)  # accepted as it is


def test_up_and_down_know_the_server_and_its_fast_shutdown():
    assert "postgresql-15" in config.APT_PACKAGES
    assert postgres.COMPONENT in cluster.SERVICES and postgres.COMPONENT in cluster.ALL_COMPONENTS
    # SIGTERM would wait for every client to disconnect ("smart" shutdown).
    assert cluster.STOP_SIGNALS[postgres.COMPONENT] == signal.SIGINT == postgres.STOP_SIGNAL


def test_env_exports_the_dsn_when_the_cluster_has_one(tmp_path):
    paths = Paths(cache=tmp_path / "c", state=tmp_path)
    info = {
        "kubeconfig": "k",
        "tools": "t",
        "registry": "r",
        "images": {"runtime": "img"},
        "s3": {"endpoint": "e", "bucket": "b", "access_key": "a", "secret_key": "s"},
    }
    paths.info.write_text(json.dumps(info))
    assert not any("QSO_ARCHIVE_DSN" in line for line in cluster.env_lines(paths))
    info["archive"] = postgres.archive_info("pw")
    paths.info.write_text(json.dumps(info))
    dsn = "postgresql://qso:pw@10.244.0.1:5432/qiskit_serverless"
    assert f"export QSO_ARCHIVE_DSN={dsn}" in cluster.env_lines(paths)


def test_the_default_cluster_is_turned_off_before_apt_installs_postgresql(tmp_path, monkeypatch):
    conf = tmp_path / "createcluster.conf"
    monkeypatch.setattr(postgres, "CREATECLUSTER_CONF", conf)
    calls: list[tuple[list[str], bool, str | None]] = []

    def run(argv, **kwargs):
        env = kwargs.get("env") or {}
        calls.append((argv, conf.exists(), env.get("UCF_FORCE_CONFFOLD")))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(cluster.subprocess, "run", run)
    paths = Paths(cache=tmp_path / "cache", state=tmp_path / "state")
    monkeypatch.setattr(cluster, "_installed", lambda package: package != "umoci")
    cluster.ensure_packages(paths)
    assert not conf.exists()  # postgresql was there: the file is left alone
    monkeypatch.setattr(cluster, "_installed", lambda package: package != "postgresql-15")
    cluster.ensure_packages(paths)
    install = [c for c in calls if c[0][:2] == ["apt-get", "install"]][-1]
    assert "postgresql-15" in install[0]
    assert install[1:] == (True, "1")  # written before, and ucf keeps it
    assert conf.read_text() == "create_main_cluster = false\n"
