"""python -m tests.cluster up|down|status|env|install|uninstall|operator-start|operator-stop|
gateway-env|build-addons"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from . import cluster
from .config import Paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster",
        description="A local single-node Kubernetes cluster built from package registries.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build what is missing, start everything, wait until ready")
    up.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="how many nodes (default 1: the machine; more are workers, docs/cluster.md)",
    )
    sub.add_parser("down", help="stop every process `up` started and remove the cluster state")
    sub.add_parser(
        "build-addons",
        help="build (or find in the cache) Kueue and Argo CD, which the kueue and gitops "
        "test tiers run",
    )
    sub.add_parser("status", help="a table of the components (exit 1 if any is stopped)")
    sub.add_parser("env", help="shell exports for KUBECONFIG, PATH, registry and S3")
    sub.add_parser(
        "operator-start",
        help="apply the CRDs and run the operator on this host against the cluster",
    )
    sub.add_parser("operator-stop", help="stop the operator `operator-start` started")
    sub.add_parser(
        "install",
        help="install the operator in the cluster (kubectl apply -k manifests/overlays/local)",
    )
    uninstall = sub.add_parser(
        "uninstall", help="remove the in-cluster operator (CRDs and their objects stay)"
    )
    uninstall.add_argument(
        "--api",
        action="store_true",
        help="also delete the CRDs, every QiskitFunction and ServerlessJob, and the admission "
        "policy: the cluster as before a first install",
    )
    gateway_env = sub.add_parser(
        "gateway-env",
        help="shell exports for a qiskit_serverless.ServerlessClient: the REST gateway's URL, "
        "the cluster's CA and a token of a ServiceAccount that may edit the namespace",
    )
    gateway_env.add_argument("--namespace", default="default")
    gateway_env.add_argument("--service-account", default="qiskit-user")
    args = parser.parse_args(argv)

    paths = Paths.from_env()
    if args.command == "env":
        print("\n".join(cluster.env_lines(paths)))
        return 0
    if args.command == "status":
        return cluster.status(paths)
    if args.command == "build-addons":
        from . import gobuild

        for module in gobuild.ADDONS:
            gobuild.build(paths, module)
        return 0
    if args.command == "gateway-env":
        from . import install

        print("\n".join(install.gateway_env(paths, args.namespace, args.service_account)))
        return 0
    if os.geteuid() != 0:
        print("the cluster runs a kubelet and containerd: run this as root", file=sys.stderr)
        return 2
    if args.command in ("operator-start", "operator-stop"):
        from . import operator_local

        if args.command == "operator-start":
            operator_local.start(paths)
        else:
            operator_local.stop(paths)
        return 0
    if args.command in ("install", "uninstall"):
        from . import install

        try:
            if args.command == "install":
                install.install(paths)
            elif args.api:
                install.remove_api(paths)
            else:
                install.uninstall(paths)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"[cluster] {args.command} failed: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "up":
        try:
            cluster.up(paths, args.nodes)
        except (RuntimeError, TimeoutError) as exc:
            print(f"[cluster] up failed: {exc}", file=sys.stderr)
            print(f"[cluster] component logs: {paths.logs}", file=sys.stderr)
            return 1
        return 0
    cluster.down(paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
