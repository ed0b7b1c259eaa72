"""Addresses, ports, paths and versions of the local cluster, in one place.

Everything the cluster serves listens either on loopback or on the node address,
which lives on the bridge this harness creates (``qso0``).  Pods reach the
registry, S3 and PostgreSQL through that address; nothing here targets another host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GOBUILD_DIR = Path(__file__).resolve().parent / "gobuild"
IMAGES_DIR = REPO_ROOT / "images"

KUBERNETES_VERSION = "v1.34.4"
NODE_NAME = "qso-node"
BRIDGE = "qso0"
# The bridge's own address is the node address: pods route to it directly, so the
# registry, S3 and the apiserver are reachable from pods without touching eth0.
NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
# The REST gateway's node port (manifests/overlays/local/kustomization.yaml).
GATEWAY_NODE_PORT = 30443

APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
KUBELET_PORT = 10250
REGISTRY_PORT = 5000
# A second registry that requires a user and password (htpasswd), for the test that builds
# and pulls function images with credentials (tests/cluster/registry_auth.py).
AUTH_REGISTRY_PORT = 5001
S3_PORT = 8333
WEED_MASTER_PORT = 9333
WEED_VOLUME_PORT = 8081
WEED_FILER_PORT = 8888
# The job-history archive's PostgreSQL (tests/cluster/postgres.py), on the node address.
POSTGRES_PORT = 5432
# The GitOps tier's host processes (tests/cluster/argocd.py), on loopback.
ARGOCD_REPO_SERVER_PORT = 8091
ARGOCD_REPO_SERVER_METRICS_PORT = 8094
ARGOCD_CONTROLLER_METRICS_PORT = 8097
ARGOCD_REDIS_PORT = 6399
GIT_DAEMON_PORT = 9418

REGISTRY = f"{NODE_IP}:{REGISTRY_PORT}"
AUTH_REGISTRY = f"{NODE_IP}:{AUTH_REGISTRY_PORT}"
S3_BUCKET = "qiskit-serverless"
S3_ENDPOINT = f"http://{NODE_IP}:{S3_PORT}"

DEBIAN_SUITE = "bookworm"
APT_PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "iproute2",
    "kmod",
    "debootstrap",
    "umoci",
    "skopeo",
    "docker-registry",
    "ca-certificates",
    # The job-history archive's database; ensure_packages stops it making a cluster of its own.
    "postgresql-15",
)
CNI_BIN_DIR = Path("/usr/lib/cni")


# Worker nodes (``up --nodes N``): node i (1..N-1) lives in network namespace qso-node-<i>
# with its own containerd, kubelet and kube-proxy. Its bridge (also called qso0, inside the
# namespace) holds its node address 10.244.<i>.1 and pods get 10.244.<i>.0/24; a veth pair
# from 10.244.255.0/24 (a /30 per node) links it to the machine, which routes every node's
# pod range: pods reach pods on other nodes, the apiserver, the registry and S3 directly.
MAX_NODES = 8
NODE_LINK_SUBNET = "10.244.255.0/24"


@dataclass(frozen=True)
class Node:
    """One node of the cluster; node 0 is the machine itself (no namespace of its own)."""

    index: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index < MAX_NODES:
            raise ValueError(f"a node index is 0..{MAX_NODES - 1}, not {self.index}")

    @property
    def worker(self) -> bool:
        return self.index > 0

    @property
    def name(self) -> str:
        return f"{NODE_NAME}-{self.index}" if self.worker else NODE_NAME

    @property
    def ip(self) -> str:
        return f"10.244.{self.index}.1"

    @property
    def pod_subnet(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def netns(self) -> str | None:
        return self.name if self.worker else None

    @property
    def host_link(self) -> str:
        """The machine's end of the veth pair (the node's end is eth0 in its namespace)."""
        return f"qso-n{self.index}"

    @property
    def host_link_ip(self) -> str:
        return f"10.244.255.{4 * self.index + 1}"

    @property
    def link_ip(self) -> str:
        return f"10.244.255.{4 * self.index + 2}"

    @property
    def cgroup(self) -> str | None:
        """The cgroup (in every v1 hierarchy) the node's processes and pods live under."""
        return f"/{self.name}" if self.worker else None

    def state(self, paths: Paths) -> Path:
        return paths.state / "nodes" / self.name if self.worker else paths.state

    def component(self, name: str) -> str:
        """The process name (pid file, log) of one of the node's components."""
        return f"{self.name}-{name}" if self.worker else name

    def containerd_socket(self, paths: Paths) -> Path:
        return self.state(paths) / "containerd" / "containerd.sock"


NODE0 = Node(0)


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


@dataclass(frozen=True)
class Paths:
    """Builds are cached (kept across ``down``); state is per cluster (removed by ``down``)."""

    cache: Path
    state: Path

    @classmethod
    def from_env(cls) -> Paths:
        xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return cls(
            cache=_env_path("QSO_CACHE_DIR", xdg / "qiskit-serverless-operator"),
            state=_env_path("QSO_STATE_DIR", Path("/var/lib/qso-cluster")),
        )

    @property
    def bin(self) -> Path:
        return self.cache / "bin"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def info(self) -> Path:
        """The machine-readable description of a running cluster (tests read it)."""
        return self.state / "cluster.json"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    def component_log(self, name: str) -> Path:
        return self.logs / f"{name}.log"
