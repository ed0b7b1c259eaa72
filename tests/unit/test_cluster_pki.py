import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cluster import config, pki


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_leaf_is_signed_by_the_ca_and_keys_are_private(tmp_path):
    pki.ensure_pki(tmp_path)
    ca = _load(tmp_path / "ca.crt")
    for spec in pki.cluster_certs():
        cert = _load(tmp_path / f"{spec.name}.crt")
        ca.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
        )
        assert cert.issuer == ca.subject
        assert (tmp_path / f"{spec.name}.key").stat().st_mode & 0o077 == 0
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert (ExtendedKeyUsageOID.SERVER_AUTH in usages) == spec.server
        assert (ExtendedKeyUsageOID.CLIENT_AUTH in usages) == spec.client


def test_apiserver_certificate_names_every_address_clients_use(tmp_path):
    pki.ensure_pki(tmp_path)
    cert = _load(tmp_path / "apiserver.crt")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    names = set(san.get_values_for_type(x509.DNSName))
    assert {config.NODE_IP, config.KUBERNETES_SERVICE_IP, "127.0.0.1"} <= ips
    assert f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}" in names
    assert ipaddress.ip_address(config.KUBERNETES_SERVICE_IP) in ipaddress.ip_network(
        config.SERVICE_CIDR
    )


def test_kubelet_identity_is_what_the_node_authorizer_expects(tmp_path):
    pki.ensure_pki(tmp_path)
    subject = _load(tmp_path / "kubelet-client.crt").subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        f"system:node:{config.NODE_NAME}"
    )
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"


def test_ensure_pki_keeps_an_existing_ca(tmp_path):
    pki.ensure_pki(tmp_path)
    first = (tmp_path / "ca.crt").read_bytes()
    pki.ensure_pki(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == first


def _cn(name: x509.Name) -> str:
    return name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_the_front_proxy_client_is_signed_by_its_own_ca_not_the_clusters(tmp_path):
    pki.ensure_pki(tmp_path)
    ca, front_ca = _load(tmp_path / "ca.crt"), _load(tmp_path / "front-proxy-ca.crt")
    client = _load(tmp_path / "front-proxy-client.crt")
    assert front_ca.subject != ca.subject and front_ca.public_key() != ca.public_key()
    assert front_ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    front_ca.public_key().verify(
        client.signature, client.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
    )
    assert client.issuer == front_ca.subject
    assert _cn(client.subject) == "front-proxy-client"
    usages = set(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {ExtendedKeyUsageOID.CLIENT_AUTH}
    for key in ("front-proxy-ca.key", "front-proxy-client.key"):
        assert (tmp_path / key).stat().st_mode & 0o077 == 0


def test_a_cluster_made_before_the_front_proxy_gets_it_and_keeps_it(tmp_path):
    pki.ensure_pki(tmp_path)
    for name in ("front-proxy-ca", "front-proxy-client"):
        (tmp_path / f"{name}.crt").unlink()
        (tmp_path / f"{name}.key").unlink()
    ca = (tmp_path / "ca.crt").read_bytes()
    pki.ensure_pki(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == ca
    front = (tmp_path / "front-proxy-ca.crt").read_bytes()
    client = (tmp_path / "front-proxy-client.crt").read_bytes()
    pki.ensure_pki(tmp_path)
    assert (tmp_path / "front-proxy-ca.crt").read_bytes() == front
    assert (tmp_path / "front-proxy-client.crt").read_bytes() == client
    # A new front proxy CA never leaves a client certificate of the old one behind.
    (tmp_path / "front-proxy-ca.key").unlink()
    pki.ensure_pki(tmp_path)
    assert (tmp_path / "front-proxy-client.crt").read_bytes() != client
    assert (
        _load(tmp_path / "front-proxy-client.crt").issuer
        == _load(tmp_path / "front-proxy-ca.crt").subject
    )
