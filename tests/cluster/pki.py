"""The cluster's certificates and keys, made with `cryptography` the way kubeadm lays them out.

One CA signs every serving and client certificate but one; a separate key pair signs
service-account tokens.  The exception is the apiserver's identity as an aggregation front
proxy (``front-proxy-client``), signed by a CA of its own as kubeadm does: an aggregated API
server believes the X-Remote-User headers of a client that CA vouches for, so it should vouch
for the apiserver alone.  Client identities follow Kubernetes' bootstrap RBAC
(system:kube-controller-manager, system:node:<name> in system:nodes, ...), so the
built-in roles apply and nothing runs with more rights than kubeadm would give it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import config

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Cert:
    """A leaf certificate: file stem, subject and what it may be used for."""

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = field(default_factory=tuple)


def cluster_certs() -> tuple[Cert, ...]:
    node = config.NODE_NAME
    svc = "kubernetes.default.svc"
    return (
        Cert(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                svc,
                f"{svc}.{config.CLUSTER_DOMAIN}",
                node,
            ),
            ips=("127.0.0.1", config.NODE_IP, config.KUBERNETES_SERVICE_IP),
        ),
        Cert(
            "etcd-server",
            "etcd",
            server=True,
            client=True,
            dns_names=("localhost",),
            ips=("127.0.0.1",),
        ),
        Cert("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True),
        # The apiserver calls kubelets (logs, exec) with this identity; kubelet asks the
        # apiserver to authorize it (webhook), and system:masters may.
        Cert(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        ),
        Cert("admin", "qso-admin", organizations=("system:masters",), client=True),
        Cert("controller-manager", "system:kube-controller-manager", client=True),
        Cert("scheduler", "system:kube-scheduler", client=True),
        Cert("kube-proxy", "system:kube-proxy", client=True),
        Cert("kubelet-client", f"system:node:{node}", organizations=("system:nodes",), client=True),
        Cert(
            "kubelet-server",
            node,
            server=True,
            dns_names=(node, "localhost"),
            ips=("127.0.0.1", config.NODE_IP),
        ),
    )


# The aggregation front proxy's CA (file stem) and the apiserver's client certificate from it
# (components.apiserver_argv names both).
FRONT_PROXY_CA = "front-proxy-ca"


def front_proxy_client_cert() -> Cert:
    return Cert("front-proxy-client", "front-proxy-client", client=True)


# The REST gateway's serving certificate (manifests/base/gateway.yaml): its Service's names
# and the node address its node port listens on (manifests/overlays/local).
GATEWAY_SERVICE = "qiskit-serverless-gateway"
GATEWAY_NAMESPACE = "qiskit-serverless"


def gateway_cert() -> Cert:
    svc = f"{GATEWAY_SERVICE}.{GATEWAY_NAMESPACE}.svc"
    return Cert(
        "gateway-serving",
        GATEWAY_SERVICE,
        server=True,
        dns_names=(
            GATEWAY_SERVICE,
            f"{GATEWAY_SERVICE}.{GATEWAY_NAMESPACE}",
            svc,
            f"{svc}.{config.CLUSTER_DOMAIN}",
            "localhost",
        ),
        ips=("127.0.0.1", config.NODE_IP),
    )


def ensure_leaf(directory: Path, spec: Cert, ca: str = "ca") -> tuple[Path, Path]:
    """A leaf signed by the CA ``ca`` (file stem; the cluster's by default), made once (for
    clusters made before it existed)."""
    cert_path, key_path = directory / f"{spec.name}.crt", directory / f"{spec.name}.key"
    if not cert_path.exists() or not key_path.exists():
        ca_key = serialization.load_pem_private_key((directory / f"{ca}.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((directory / f"{ca}.crt").read_bytes())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key, cert = make_leaf(spec, ca_key, ca_cert, datetime.datetime.now(datetime.UTC))
        _write_key(key_path, key)
        _write_cert(cert_path, cert)
    return cert_path, key_path


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    now: datetime.datetime, common_name: str = "qso-cluster-ca"
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + 10 * _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    spec: Cert,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    usages = []
    if spec.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.common_name, spec.organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def ensure_pki(directory: Path) -> None:
    """Create the CA, every leaf and the service-account key pair once per cluster; the front
    proxy's CA and client certificate also in a cluster made before they existed."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / ".complete").exists():
        _make_cluster_pki(directory)
    ensure_front_proxy(directory)


def ensure_front_proxy(directory: Path) -> tuple[Path, Path]:
    """The front proxy's own CA and the client certificate it signs, each made once."""
    ca_cert, ca_key = directory / f"{FRONT_PROXY_CA}.crt", directory / f"{FRONT_PROXY_CA}.key"
    if not ca_cert.exists() or not ca_key.exists():
        key, cert = make_ca(datetime.datetime.now(datetime.UTC), "qso-front-proxy-ca")
        _write_key(ca_key, key)
        _write_cert(ca_cert, cert)
        # A client certificate of an earlier CA would no longer verify.
        for suffix in (".crt", ".key"):
            (directory / f"{front_proxy_client_cert().name}{suffix}").unlink(missing_ok=True)
    return ensure_leaf(directory, front_proxy_client_cert(), ca=FRONT_PROXY_CA)


def _make_cluster_pki(directory: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = make_ca(now)
    _write_key(directory / "ca.key", ca_key)
    _write_cert(directory / "ca.crt", ca_cert)
    for spec in cluster_certs():
        key, cert = make_leaf(spec, ca_key, ca_cert, now)
        _write_key(directory / f"{spec.name}.key", key)
        _write_cert(directory / f"{spec.name}.crt", cert)
    sa_key = _key()
    _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (directory / ".complete").write_text("ok\n")


def kubeconfig(*, server: str, pki: Path, user: str, cert: str) -> dict:
    """A kubeconfig that embeds nothing: it names the PKI files, so rotating is one `up`."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "qso",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{cert}.crt"),
                    "client-key": str(pki / f"{cert}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "qso", "context": {"cluster": "qso", "user": user, "namespace": "default"}}
        ],
        "current-context": "qso",
    }
