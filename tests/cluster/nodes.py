"""Worker nodes: more kubelets joined to the same apiserver (``up --nodes N``).

Each worker is node i of config.Node: its own network namespace (pods of different nodes
talk through the machine's routes, as through a real network), its own containerd (its own
image store: images are pulled once per node, as on real nodes), kubelet and kube-proxy, its
own cgroup in every v1 hierarchy (its pods are under ``/qso-node-<i>/kubepods``), its own
kubelet identity (``system:node:qso-node-<i>``, so the Node authorizer and NodeRestriction
treat it as the node it is). The machine's mount namespace stays shared: a kubelet's volume
mounts must be visible to its containerd, and both run as host processes. docs/cluster.md
has the layout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from . import components, config, pki, procs
from .config import Node, Paths
from .procs import kill_shims
from .progress import say

NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def _in_ns(node: Node, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("nsenter", f"--net=/run/netns/{node.netns}", "--", *argv, check=check)


def _ensure_rule(node: Node | None, table: str, chain: str, *rule: str) -> None:
    """Insert an iptables rule at the top of ``chain`` once (in the node's namespace, or on
    the machine when ``node`` is None)."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _in_ns(node, *args, check=check) if node else _run(*args, check=check)

    if run("iptables", "-t", table, "-C", chain, *rule, check=False).returncode != 0:
        run("iptables", "-t", table, "-I", chain, *rule)


def _machine_rules() -> list[tuple[str, str, tuple[str, ...]]]:
    cluster = config.CLUSTER_CIDR
    return [
        # Between nodes, whatever the machine's FORWARD policy.
        ("filter", "FORWARD", ("-s", cluster, "-d", cluster, "-j", "ACCEPT")),
        # Node 0's pods keep their address towards other nodes' pods (as the workers' do).
        ("nat", "POSTROUTING", ("-s", cluster, "-d", cluster, "-j", "RETURN")),
        # A worker's traffic off the machine (a build's package index) leaves with the
        # machine's address, like node 0's pods (the CNI masquerades those).
        (
            "nat",
            "POSTROUTING",
            ("-s", config.NODE_LINK_SUBNET, "!", "-d", cluster, "-j", "MASQUERADE"),
        ),
    ]


def _cgroup_dirs(node: Node, *, unified: bool = False) -> list[Path]:
    """The node's cgroup in each v1 hierarchy (and in the hybrid unified one, which runc
    fills too, when ``unified``)."""
    assert node.cgroup
    return [
        h / node.cgroup.lstrip("/")
        for h in sorted(_CGROUP_ROOT.iterdir())
        if h.is_dir() and not h.is_symlink() and (unified or h.name != "unified")
    ]


def _setup_cgroups(node: Node) -> None:
    for directory in _cgroup_dirs(node):
        directory.mkdir(exist_ok=True)
        if directory.parent.name == "cpuset":
            # A new cpuset has no CPUs or memory nodes: no process could join it.
            for key in ("cpuset.cpus", "cpuset.mems"):
                target = directory / key
                if not target.read_text().strip():
                    target.write_text((directory.parent / key).read_text())


def _remove_cgroups(node: Node) -> None:
    for directory in _cgroup_dirs(node, unified=True):
        procs.remove_cgroup_tree(directory)


def setup_network(node: Node) -> None:
    assert node.netns
    if node.netns not in _run("ip", "netns", "list").stdout.split():
        _run("ip", "netns", "add", node.netns)
    if _run("ip", "link", "show", node.host_link, check=False).returncode != 0:
        # The node's end is made in its namespace: the machine has an eth0 of its own.
        _run(
            "ip", "link", "add", node.host_link, "type", "veth",
            "peer", "name", "eth0", "netns", node.netns,
        )  # fmt: skip
    if node.host_link_ip not in _run("ip", "-4", "addr", "show", node.host_link).stdout:
        _run("ip", "addr", "add", f"{node.host_link_ip}/30", "dev", node.host_link)
    _run("ip", "link", "set", node.host_link, "up")

    _in_ns(node, "ip", "link", "set", "lo", "up")
    if node.link_ip not in _in_ns(node, "ip", "-4", "addr", "show", "eth0").stdout:
        _in_ns(node, "ip", "addr", "add", f"{node.link_ip}/30", "dev", "eth0")
    _in_ns(node, "ip", "link", "set", "eth0", "up")
    if _in_ns(node, "ip", "link", "show", config.BRIDGE, check=False).returncode != 0:
        _in_ns(node, "ip", "link", "add", config.BRIDGE, "type", "bridge")
    if node.ip not in _in_ns(node, "ip", "-4", "addr", "show", config.BRIDGE).stdout:
        _in_ns(node, "ip", "addr", "add", f"{node.ip}/24", "dev", config.BRIDGE)
    _in_ns(node, "ip", "link", "set", config.BRIDGE, "up")
    _in_ns(node, "ip", "route", "replace", "default", "via", node.host_link_ip)
    # Service addresses stay on the node (kube-proxy's rules in this namespace catch them).
    _in_ns(node, "ip", "route", "replace", config.SERVICE_CIDR, "dev", config.BRIDGE)
    for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        # Per namespace on current kernels; where the bridge one is global it is set already.
        _in_ns(node, "sysctl", "-qw", f"{key}=1", check=False)
    # Pod to pod (and pod to the machine) keeps the pod's address: the CNI's masquerade is
    # for traffic leaving the cluster only.
    cluster = config.CLUSTER_CIDR
    _ensure_rule(node, "nat", "POSTROUTING", "-s", cluster, "-d", cluster, "-j", "RETURN")

    _run("ip", "route", "replace", node.pod_subnet, "via", node.link_ip, "dev", node.host_link)
    for table, chain, rule in _machine_rules():
        _ensure_rule(None, table, chain, *rule)


def teardown_network(node: Node) -> None:
    _run("ip", "route", "del", node.pod_subnet, check=False)
    _run("ip", "link", "del", node.host_link, check=False)
    if node.netns:
        _run("ip", "netns", "del", node.netns, check=False)


def teardown_machine_rules() -> None:
    for table, chain, rule in _machine_rules():
        while _run("iptables", "-t", table, "-D", chain, *rule, check=False).returncode == 0:
            pass


def write_files(paths: Paths, node: Node, sandbox_image: str) -> None:
    state = node.state(paths)
    client = components.kubelet_client_cert(node)
    pki.ensure_leaf(
        paths.pki,
        pki.Cert(client, f"system:node:{node.name}", organizations=("system:nodes",), client=True),
    )
    pki.ensure_leaf(
        paths.pki,
        pki.Cert(
            components.kubelet_server_cert(node),
            node.name,
            server=True,
            dns_names=(node.name, "localhost"),
            ips=("127.0.0.1", node.ip),
        ),
    )
    server = f"https://{config.NODE_IP}:{config.APISERVER_PORT}"
    kubeconfig = pki.kubeconfig(
        server=server, pki=paths.pki, user=f"system:node:{node.name}", cert=client
    )
    files = {
        state / "kubelet.kubeconfig": yaml.safe_dump(kubeconfig),
        state / "kubelet-config.yaml": components.kubelet_config(paths, node),
        state / "kube-proxy-config.yaml": components.kube_proxy_config(paths, node),
        state / "containerd" / "config.toml": components.containerd_config(
            paths, sandbox_image, node
        ),
        state / "cni" / "net.d" / "10-qso.conflist": components.cni_conflist(paths, node),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)


def node_ready(paths: Paths, name: str) -> bool:
    out = _run(
        str(paths.state / "path" / "kubectl"),
        f"--kubeconfig={paths.kubeconfig}",
        "get",
        "node",
        name,
        "-o",
        "json",
        check=False,
    )
    if out.returncode != 0:
        return False
    conditions = json.loads(out.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def start(paths: Paths, node: Node, binaries: dict[str, Path], sandbox_image: str) -> None:
    """Make node ``node`` and wait until it is Ready (idempotent: a running node is kept)."""
    assert node.worker
    write_files(paths, node, sandbox_image)
    _setup_cgroups(node)
    setup_network(node)
    cgroup_procs = [str(d / "cgroup.procs") for d in _cgroup_dirs(node)]

    def in_cgroup(argv: list[str]) -> list[str]:
        # The process joins the node's cgroup before it becomes the component.
        script = 'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f"; shift; done; '
        return ["sh", "-c", script + 'shift; exec "$@"', "sh", *cgroup_procs, "--", *argv]

    procs.start(
        paths, node.component("containerd"), in_cgroup(components.containerd_argv(paths, node))
    )
    procs.wait_for(
        node.containerd_socket(paths).exists,
        what=f"{node.name}'s containerd socket",
        timeout=30,
        alive=procs.alive(paths, node.component("containerd")),
    )
    procs.start(
        paths,
        node.component("kubelet"),
        in_cgroup(components.kubelet_argv(paths, binaries["kubelet"], node)),
    )
    procs.start(
        paths,
        node.component("kube-proxy"),
        in_cgroup(components.kube_proxy_argv(paths, binaries["kube-proxy"], node)),
    )
    procs.wait_for(
        lambda: node_ready(paths, node.name),
        what=f"node {node.name} Ready",
        timeout=180,
        alive=procs.alive(paths, *(node.component(n) for n in NODE_COMPONENTS)),
    )


def workers(paths: Paths) -> list[Node]:
    """The worker nodes this cluster has state for."""
    root = paths.state / "nodes"
    if not root.is_dir():
        return []
    prefix = f"{config.NODE_NAME}-"
    return [
        Node(int(d.name[len(prefix) :]))
        for d in sorted(root.iterdir())
        if d.name.startswith(prefix) and d.name[len(prefix) :].isdigit()
    ]


def stop(paths: Paths, node: Node, *, delete_node: bool = True) -> None:
    """Stop the node's processes, remove its pods' leftovers, its network and its state."""
    say(f"removing node {node.name}")
    state = node.state(paths)
    kubectl = paths.state / "path" / "kubectl"
    if delete_node and kubectl.exists():
        _run(
            str(kubectl),
            f"--kubeconfig={paths.kubeconfig}",
            "delete",
            "node",
            node.name,
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )
    procs.stop(paths, node.component("kubelet"))
    crictl = paths.state / "path" / "crictl"
    if procs.running_pid(paths, node.component("containerd")) is not None and crictl.exists():
        subprocess.run(
            [
                str(crictl),
                f"--runtime-endpoint=unix://{node.containerd_socket(paths)}",
                "rmp",
                "-a",
                "-f",
            ],
            capture_output=True,
            timeout=120,
        )
    procs.stop(paths, node.component("kube-proxy"))
    procs.stop(paths, node.component("containerd"))
    kill_shims(node.containerd_socket(paths))
    for mountpoint in procs.mounts_under(state):
        _run("umount", "-l", mountpoint, check=False)
    _remove_cgroups(node)
    teardown_network(node)
    shutil.rmtree(state, ignore_errors=True)
    if not workers(paths):
        teardown_machine_rules()
