"""What the harness starts stays on this machine, and the node is set up for cgroup v1."""

import ipaddress
import json
import re
import tomllib
from pathlib import Path

import yaml

from tests.cluster import components, config, gobuild, postgres
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
            " ".join(postgres.server_argv(PATHS)),
            postgres.hba_conf(),
            postgres.dsn("pw"),
            *_worker_text(config.Node(2)),
        ]
    )


def _worker_text(node: config.Node) -> list[str]:
    return [
        " ".join(components.kubelet_argv(PATHS, BIN, node)),
        " ".join(components.kube_proxy_argv(PATHS, BIN, node)),
        " ".join(components.containerd_argv(PATHS, node)),
        components.containerd_config(PATHS, "img", node),
        components.cni_conflist(PATHS, node).replace('"dst": "0.0.0.0/0"', ""),
        components.kubelet_config(PATHS, node),
        components.kube_proxy_config(PATHS, node),
        " ".join([node.ip, node.pod_subnet, node.link_ip, node.host_link_ip]),
    ]


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


def test_apiserver_is_an_aggregation_front_proxy_with_a_ca_of_its_own():
    flags = dict(
        a.removeprefix("--").split("=", 1) for a in components.apiserver_argv(PATHS, BIN)[1:]
    )
    assert flags["requestheader-client-ca-file"] == "/s/pki/front-proxy-ca.crt"
    assert flags["requestheader-client-ca-file"] != flags["client-ca-file"]
    assert flags["requestheader-allowed-names"] == "front-proxy-client"
    assert flags["requestheader-username-headers"] == "X-Remote-User"
    assert flags["requestheader-group-headers"] == "X-Remote-Group"
    assert flags["requestheader-extra-headers-prefix"] == "X-Remote-Extra-"
    assert flags["proxy-client-cert-file"] == "/s/pki/front-proxy-client.crt"
    assert flags["proxy-client-key-file"] == "/s/pki/front-proxy-client.key"
    assert flags["enable-aggregator-routing"] == "true"


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


def test_node_0_is_the_machine_and_keeps_its_names():
    node = config.NODE0
    assert (node.name, node.ip, node.pod_subnet) == (
        config.NODE_NAME,
        config.NODE_IP,
        config.POD_SUBNET,
    )
    assert node.netns is None and node.cgroup is None and node.state(PATHS) == PATHS.state
    assert node.containerd_socket(PATHS) == PATHS.containerd_socket
    assert components.kubelet_argv(PATHS, BIN)[0] == str(BIN)  # no namespace to enter
    assert "cgroupRoot" not in yaml.safe_load(components.kubelet_config(PATHS))


def test_a_worker_has_its_own_namespace_addresses_state_cgroup_and_identity():
    one, two = config.Node(1), config.Node(2)
    assert one.name == f"{config.NODE_NAME}-1" and one.ip == "10.244.1.1"
    # Ranges never overlap: each node's pods, and each node's link to the machine.
    nets = [ipaddress.ip_network(n.pod_subnet) for n in (config.NODE0, one, two)]
    links = [ipaddress.ip_network(f"{n.link_ip}/30", strict=False) for n in (one, two)]
    for i, a in enumerate(nets + links):
        for b in (nets + links)[i + 1 :]:
            assert not a.overlaps(b), (a, b)
        assert a.subnet_of(ipaddress.ip_network(config.CLUSTER_CIDR))
    kubelet = yaml.safe_load(components.kubelet_config(PATHS, two))
    assert kubelet["address"] == two.ip and kubelet["cgroupRoot"] == "/qso-node-2"
    assert kubelet["tlsCertFile"].endswith("kubelet-server-qso-node-2.crt")
    assert str(two.state(PATHS)) in kubelet["containerRuntimeEndpoint"]
    argv = components.kubelet_argv(PATHS, BIN, two)
    assert argv[:3] == ["nsenter", "--net=/run/netns/qso-node-2", "--"]
    assert "--hostname-override=qso-node-2" in argv and "--node-ip=10.244.2.1" in argv
    containerd = tomllib.loads(components.containerd_config(PATHS, "img", two))
    assert containerd["root"].startswith(str(two.state(PATHS)))
    assert containerd["grpc"]["address"] != str(PATHS.containerd_socket)
    ipam = json.loads(components.cni_conflist(PATHS, two))["plugins"][0]["ipam"]
    assert ipam["ranges"][0][0] == {"subnet": "10.244.2.0/24", "gateway": "10.244.2.1"}
    proxy = yaml.safe_load(components.kube_proxy_config(PATHS, two))
    assert proxy["hostnameOverride"] == "qso-node-2"
    assert proxy["nodePortAddresses"] == ["10.244.2.1/32"]
    assert two.component("kubelet") == "qso-node-2-kubelet"
    for bad in (-1, config.MAX_NODES):
        try:
            config.Node(bad)
        except ValueError:
            continue
        raise AssertionError(f"Node({bad}) was accepted")
