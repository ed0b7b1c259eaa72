"""The REST gateway's settings, read once from the environment (the install's ConfigMap and
Secrets; docs/gateway.md lists them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import S3_REQUIRED, ConfigError, S3Settings, file_limits, int_setting, require
from ..files import Limits


@dataclass(frozen=True)
class GatewayConfig:
    s3: S3Settings
    bind: str = "0.0.0.0"
    port: int = 8443
    # A PEM certificate (chain) and key: the API is served over TLS. Without them, plain
    # HTTP (for a gateway on a developer's machine; the install always sets them).
    tls_cert: str | None = None
    tls_key: str | None = None
    # Health, readiness and Prometheus metrics, on a port of their own (plain HTTP for the
    # kubelet's probes and the scraper).
    health_bind: str = "0.0.0.0"
    health_port: int = 9090
    # A function artifact or a file uploaded in one request.
    max_upload_bytes: int = 100 * 1024 * 1024
    files: Limits = field(default_factory=Limits)
    # How long a TokenReview's and a SubjectAccessReview's answer is reused.
    token_cache_seconds: int = 60
    access_cache_seconds: int = 10
    # Jobs' logs above this are cut to the tail (the operator's QSO_MAX_LOG_BYTES).
    max_log_bytes: int = 50 * 1024 * 1024
    # Job history (the operator's QSO_ARCHIVE_DSN): archived jobs are read from it.
    archive_dsn: str | None = field(default=None, repr=False)
    # The history API (history_api.py) the Kubernetes API server proxies to (an APIService):
    # TLS with the same certificate, client certificates of the API server's front proxy.
    # 0: not served.
    history_port: int = 8444

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> GatewayConfig:
        env = dict(os.environ if env is None else env)
        require(env, S3_REQUIRED)
        cert, key = env.get("QSO_GATEWAY_TLS_CERT") or None, env.get("QSO_GATEWAY_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise ConfigError("set both QSO_GATEWAY_TLS_CERT and QSO_GATEWAY_TLS_KEY, or neither")
        for name, path in (("QSO_GATEWAY_TLS_CERT", cert), ("QSO_GATEWAY_TLS_KEY", key)):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name}: no file {path!r}")
        config = cls(
            s3=S3Settings.from_env(env),
            bind=env.get("QSO_GATEWAY_BIND", "0.0.0.0"),
            port=int_setting(env, "QSO_GATEWAY_PORT", 8443),
            tls_cert=cert,
            tls_key=key,
            health_bind=env.get("QSO_GATEWAY_HEALTH_BIND", "0.0.0.0"),
            health_port=int_setting(env, "QSO_GATEWAY_HEALTH_PORT", 9090),
            max_upload_bytes=int_setting(env, "QSO_GATEWAY_MAX_UPLOAD_BYTES", 100 * 1024 * 1024),
            files=file_limits(env),
            token_cache_seconds=int_setting(env, "QSO_GATEWAY_TOKEN_CACHE_SECONDS", 60),
            access_cache_seconds=int_setting(env, "QSO_GATEWAY_ACCESS_CACHE_SECONDS", 10),
            max_log_bytes=int_setting(env, "QSO_MAX_LOG_BYTES", 50 * 1024 * 1024),
            archive_dsn=env.get("QSO_ARCHIVE_DSN") or None,
            history_port=int_setting(env, "QSO_GATEWAY_HISTORY_PORT", 8444),
        )
        if config.max_upload_bytes < 1:
            raise ConfigError("QSO_GATEWAY_MAX_UPLOAD_BYTES must be positive")
        return config
