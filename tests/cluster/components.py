"""Command lines and configuration files of each cluster component.

Pure functions of the paths and binaries, so unit tests can check them without
starting anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from . import config
from .config import NODE0, Node, Paths


def etcd_argv(paths: Paths, etcd: Path) -> list[str]:
    pki = paths.pki
    return [
        str(etcd),
        "--name=qso",
        f"--data-dir={paths.state / 'etcd'}",
        f"--listen-client-urls=https://127.0.0.1:{config.ETCD_CLIENT_PORT}",
        f"--advertise-client-urls=https://127.0.0.1:{config.ETCD_CLIENT_PORT}",
        f"--listen-peer-urls=http://127.0.0.1:{config.ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{config.ETCD_PEER_PORT}",
        f"--initial-cluster=qso=http://127.0.0.1:{config.ETCD_PEER_PORT}",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        f"--cert-file={pki / 'etcd-server.crt'}",
        f"--key-file={pki / 'etcd-server.key'}",
        f"--trusted-ca-file={pki / 'ca.crt'}",
        "--client-cert-auth",
        # A throwaway dev cluster: skipping fsync makes etcd writes ~10x cheaper on a
        # shared disk; durability across a machine crash is not a goal here.
        "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296",
    ]


def apiserver_argv(paths: Paths, binary: Path) -> list[str]:
    pki = paths.pki
    return [
        str(binary),
        f"--advertise-address={config.NODE_IP}",
        f"--bind-address={config.NODE_IP}",
        f"--secure-port={config.APISERVER_PORT}",
        f"--etcd-servers=https://127.0.0.1:{config.ETCD_CLIENT_PORT}",
        f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        # On top of the default admission plugins, as kubeadm does.
        "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={config.SERVICE_CIDR}",
        f"--service-account-issuer=https://kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        # The aggregation layer (an APIService backed by a Service, as metrics-server's), as
        # kubeadm sets it up: the apiserver proxies with the front proxy's client
        # certificate, and aggregated servers trust the user headers of that CA's
        # front-proxy-client only.
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        # Straight to the Service's endpoint (pod) addresses, not its ClusterIP: an
        # aggregated API then does not depend on kube-proxy's rules being in place.
        "--enable-aggregator-routing=true",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


def _secure_component_args(kubeconfig: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(paths: Paths, binary: Path) -> list[str]:
    pki = paths.pki
    return [
        str(binary),
        *_secure_component_args(paths.state / "controller-manager.kubeconfig"),
        "--cluster-name=qso",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={config.SERVICE_CIDR}",
        # Pod addresses come from the CNI config's fixed subnet, not from node podCIDRs.
        "--allocate-node-cidrs=false",
        "--leader-elect=false",
    ]


def scheduler_argv(paths: Paths, binary: Path) -> list[str]:
    return [
        str(binary),
        *_secure_component_args(paths.state / "scheduler.kubeconfig"),
        "--leader-elect=false",
    ]


def containerd_config(paths: Paths, sandbox_image: str, node: Node = NODE0) -> str:
    root = node.state(paths) / "containerd"
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"

[grpc]
  address = "{node.containerd_socket(paths)}"

{cri}
  sandbox_image = "{sandbox_image}"
  enable_selinux = false
  # This sandbox withholds CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj below 0
  # (the kubelet asks -998 for pod sandboxes): clamp to containerd's own score instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 without systemd as init: the kubelet uses the cgroupfs driver too.
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{config.CNI_BIN_DIR}"
    conf_dir = "{node.state(paths) / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{paths.state / "containerd" / "certs.d"}"
"""


def registry_hosts_toml(registry: str = config.REGISTRY) -> str:
    """containerd talks plain HTTP to the local registry (it serves no TLS)."""
    return f"""server = "http://{registry}"

[host."http://{registry}"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
"""


def cni_conflist(paths: Paths, node: Node = NODE0) -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "qso",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": config.BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    # A pod reaching a Service that load-balances back to itself.
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": node.pod_subnet, "gateway": node.ip}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(node.state(paths) / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet_server_cert(node: Node) -> str:
    return f"kubelet-server-{node.name}" if node.worker else "kubelet-server"


def kubelet_client_cert(node: Node) -> str:
    return f"kubelet-client-{node.name}" if node.worker else "kubelet-client"


def kubelet_config(paths: Paths, node: Node = NODE0) -> str:
    pki = paths.pki
    state = node.state(paths)
    return yaml.safe_dump(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": node.ip,
            "port": config.KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki / f"{kubelet_server_cert(node)}.crt"),
            "tlsPrivateKeyFile": str(pki / f"{kubelet_server_cert(node)}.key"),
            # These machines run cgroup v1 (hybrid) without systemd as PID 1.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            # A worker's pods live under its own cgroup (node 0's under the root).
            **({"cgroupRoot": node.cgroup} if node.cgroup else {}),
            "containerRuntimeEndpoint": f"unix://{node.containerd_socket(paths)}",
            "clusterDNS": [config.DNS_SERVICE_IP],
            "clusterDomain": config.CLUSTER_DOMAIN,
            "podLogsDir": str(state / "pod-logs"),
            # Shared CI disks: evict only when really full, never garbage-collect the
            # images the tests just pushed.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
                "nodefs.inodesFree": "2%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "maxPods": 200,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
        },
        sort_keys=False,
    )


def in_node(node: Node, argv: list[str]) -> list[str]:
    """``argv`` run in the node's network namespace (the machine's mounts stay shared: the
    kubelet's volume mounts must be the ones its containerd sees), in the node's cgroup."""
    if not node.worker:
        return argv
    return [
        "nsenter",
        f"--net=/run/netns/{node.netns}",
        "--",
        *argv,
    ]


def kubelet_argv(paths: Paths, binary: Path, node: Node = NODE0) -> list[str]:
    state = node.state(paths)
    return in_node(
        node,
        [
            str(binary),
            f"--config={state / 'kubelet-config.yaml'}",
            f"--kubeconfig={state / 'kubelet.kubeconfig'}",
            f"--root-dir={state / 'kubelet'}",
            f"--hostname-override={node.name}",
            f"--node-ip={node.ip}",
            "--v=1",
        ],
    )


def kube_proxy_config(paths: Paths, node: Node = NODE0) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(paths.state / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": config.CLUSTER_CIDR,
            "hostnameOverride": node.name,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Node ports only on the node address, never on the machine's own interfaces.
            "nodePortAddresses": [f"{node.ip}/32"],
            # Leave the machine's conntrack sysctls alone (0 = do not touch).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False},
        },
        sort_keys=False,
    )


def kube_proxy_argv(paths: Paths, binary: Path, node: Node = NODE0) -> list[str]:
    config_file = node.state(paths) / "kube-proxy-config.yaml"
    return in_node(node, [str(binary), f"--config={config_file}", "--v=1"])


def containerd_argv(paths: Paths, node: Node = NODE0) -> list[str]:
    config_file = node.state(paths) / "containerd" / "config.toml"
    return in_node(node, ["containerd", "--config", str(config_file)])


def registry_config(paths: Paths) -> str:
    return yaml.safe_dump(
        {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {
                "filesystem": {"rootdirectory": str(paths.state / "registry")},
                "delete": {"enabled": True},
            },
            "http": {"addr": config.REGISTRY},
        },
        sort_keys=False,
    )


def seaweed_s3_config(access_key: str, secret_key: str) -> str:
    """One identity: S3 requires signed requests (and so validates presigned URLs)."""
    return json.dumps(
        {
            "identities": [
                {
                    "name": "qso",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        },
        indent=2,
    )


def seaweed_argv(paths: Paths, weed: Path) -> list[str]:
    return [
        str(weed),
        "server",
        f"-dir={paths.state / 'seaweed'}",
        f"-ip={config.NODE_IP}",
        f"-ip.bind={config.NODE_IP}",
        f"-master.port={config.WEED_MASTER_PORT}",
        "-master.volumeSizeLimitMB=1024",
        f"-volume.port={config.WEED_VOLUME_PORT}",
        "-volume.max=0",
        f"-filer.port={config.WEED_FILER_PORT}",
        "-s3",
        f"-s3.port={config.S3_PORT}",
        f"-s3.config={paths.state / 's3.json'}",
    ]
