"""What the harness starts stays on this machine, and the node is set up for cgroup v1."""

import ipaddress
import json
import re
import tomllib
from pathlib import Path

import yaml

from tests.cluster import components, config, gobuild
from tests.cluster.config import Paths

PATHS = Paths(cache=Path("/c"), state=Path("/s"))
BIN = Path("/bin/x")


def _all_rendered_text() -> str:
    return "\n".join(
        [
            " ".join(components.etcd_argv(PATHS, BIN)),
            " ".join(components.apiserver_argv(PATHS, BIN)),
            " ".join(components.controller_manager_argv(PATHS, BIN)),
            " ".join(components.scheduler_argv(PATHS, BIN)),
            " ".join(components.kubelet_argv(PATHS, BIN)),
            " ".join(components.kube_proxy_argv(PATHS, BIN)),
            " ".join(components.seaweed_argv(PATHS, BIN)),
            components.containerd_config(PATHS, "img"),
            components.registry_hosts_toml(),
            # The pods' default route points at the node; it is not a listen address.
            components.cni_conflist(PATHS).replace('"dst": "0.0.0.0/0"', ""),
            components.kubelet_config(PATHS),
            components.kube_proxy_config(PATHS),
            components.registry_config(PATHS),
        ]
    )


def test_every_address_is_loopback_or_the_harness_networks():
    allowed = [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network(config.CLUSTER_CIDR),
        ipaddress.ip_network(config.SERVICE_CIDR),
    ]
    found = re.findall(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", _all_rendered_text())
    assert found
    for text in found:
        address = ipaddress.ip_address(text)
        assert any(address in net for net in allowed), f"{address} is outside the harness"


def test_kubelet_runs_on_cgroup_v1_with_cgroupfs():
    kubelet = yaml.safe_load(components.kubelet_config(PATHS))
    assert kubelet["failCgroupV1"] is False
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    containerd = tomllib.loads(components.containerd_config(PATHS, "reg/pause:1"))
    cri = containerd["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "reg/pause:1"


def test_apiserver_enforces_rbac_and_signs_service_account_tokens():
    argv = components.apiserver_argv(PATHS, BIN)
    assert "--authorization-mode=Node,RBAC" in argv
    assert any(a.startswith("--service-account-signing-key-file=") for a in argv)
    assert not any(a.startswith("--admission-control") for a in argv)


def test_cni_gateway_is_the_node_address():
    conf = json.loads(components.cni_conflist(PATHS))
    (rng,) = conf["plugins"][0]["ipam"]["ranges"][0:1]
    assert rng[0]["gateway"] == config.NODE_IP
    assert ipaddress.ip_address(config.NODE_IP) in ipaddress.ip_network(rng[0]["subnet"])


def test_build_module_pins_every_staging_module_to_the_kubernetes_release():
    gomod = (config.GOBUILD_DIR / "kubernetes" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {config.KUBERNETES_VERSION}" in gomod
    staging = re.findall(r"^\s*(k8s\.io/[\w-]+) => (k8s\.io/[\w-]+) (v\S+)$", gomod, re.M)
    assert len(staging) >= 30
    expected = "v0." + config.KUBERNETES_VERSION.split(".", 1)[1]
    for old, new, version in staging:
        assert old == new and version == expected, (old, version)


def test_cache_key_follows_the_pinned_versions(tmp_path, monkeypatch):
    module_dir = tmp_path / "pause"
    module_dir.mkdir()
    (module_dir / "go.mod").write_text("module x\n")
    (module_dir / "main.go").write_text("package main\n")
    monkeypatch.setattr(config, "GOBUILD_DIR", tmp_path)
    module = gobuild.GoModule("pause", ("pause",), target=".")
    first = gobuild.cache_key(module, "go1.26")
    assert gobuild.cache_key(module, "go1.26") == first
    assert gobuild.cache_key(module, "go1.27") != first
    (module_dir / "go.sum").write_text("dep v1 h1:abc\n")
    assert gobuild.cache_key(module, "go1.26") != first
