"""Object storage for results and logs: keys, presigned URLs, reads and deletes (S3 API).

Job pods never hold credentials: the operator presigns one PUT URL per object.
Keys are namespaced by Kubernetes namespace and ServerlessJob UID, so two jobs
never share an object and a recreated job (same name, new UID) starts clean.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from .config import S3Settings

F = TypeVar("F", bound=Callable[..., Any])

# SigV4 presigned URLs cannot be valid longer than seven days.
MAX_URL_SECONDS = 7 * 24 * 3600


def result_key(namespace: str, uid: str) -> str:
    return f"jobs/{namespace}/{uid}/result.json"


def logs_key(namespace: str, uid: str) -> str:
    return f"jobs/{namespace}/{uid}/logs.txt"


def provider_logs_key(namespace: str, uid: str) -> str:
    """A provider's function: the lines its provider sees (the user's are in logs.txt)."""
    return f"jobs/{namespace}/{uid}/provider-logs.txt"


def task_payloads_folder(namespace: str, parent_uid: str) -> str:
    """The pickled calls of a job's tasks, under the job (removed with its objects)."""
    return f"jobs/{namespace}/{parent_uid}/tasks/"


def task_payload_key(namespace: str, parent_uid: str, index: int) -> str:
    return f"{task_payloads_folder(namespace, parent_uid)}{index}.pkl"


def archive_key(namespace: str, uid: str, sha256: str) -> str:
    return f"functions/{namespace}/{uid}/source-{sha256}.tar.gz"


def build_logs_key(namespace: str, uid: str, tag: str) -> str:
    return f"functions/{namespace}/{uid}/build-{tag}.log"


def _counted(operation: str) -> Callable[[F], F]:
    """Count a failed object storage request (the "not found" answers the methods turn into
    None are not failures)."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception:
                from .metrics import S3_ERRORS

                S3_ERRORS.labels(operation).inc()
                raise

        return counted  # type: ignore[return-value]

    return wrap


@dataclass
class ObjectStore:
    settings: S3Settings

    @cached_property
    def _client(self) -> Any:
        # boto3 is imported on first use: it is the largest import of the operator.
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.settings.endpoint,
            aws_access_key_id=self.settings.access_key,
            aws_secret_access_key=self.settings.secret_key,
            region_name=self.settings.region,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    def presign_put(self, key: str, seconds: int) -> str:
        return self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=max(1, min(seconds, MAX_URL_SECONDS)),
        )

    @_counted("sha256")
    def sha256(self, key: str) -> str | None:
        """SHA-256 of the object (streamed), or None when it does not exist."""
        import hashlib

        from botocore.exceptions import ClientError

        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def presign_get(self, key: str, seconds: int = 3600) -> str:
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=max(1, min(seconds, MAX_URL_SECONDS)),
        )

    @_counted("size")
    def size(self, key: str) -> int | None:
        """The object's size, or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    @_counted("put")
    def put(self, key: str, data: bytes, content_type: str = "text/plain") -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    @_counted("get")
    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    @_counted("delete")
    def delete(self, *keys: str) -> None:
        for key in keys:
            self._client.delete_object(Bucket=self.bucket, Key=key)

    @_counted("list_folder")
    def list_folder(self, prefix: str) -> list[tuple[str, int]]:
        """The objects directly in the folder ``prefix`` (ending in '/'): (name, size),
        sorted; objects in sub-folders are not listed."""
        found: list[tuple[str, int]] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for item in page.get("Contents") or []:
                name = item["Key"][len(prefix) :]
                if name:
                    found.append((name, int(item["Size"])))
        return sorted(found)

    @_counted("open")
    def open(self, key: str) -> tuple[Any, int] | None:
        """A streaming body and its size, or None when the object does not exist."""
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return response["Body"], int(response["ContentLength"])

    @_counted("put_file")
    def put_file(self, key: str, handle: Any, content_type: str) -> None:
        """Store an open file (streamed, in parts when large)."""
        self._client.upload_fileobj(
            handle, self.bucket, key, ExtraArgs={"ContentType": content_type}
        )

    # The operator is asyncio; boto3 blocks. These run the calls in a worker thread.
    async def asize(self, key: str) -> int | None:
        return await asyncio.to_thread(self.size, key)

    async def aput(self, key: str, data: bytes, content_type: str = "text/plain") -> None:
        await asyncio.to_thread(self.put, key, data, content_type)

    async def aget(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self.get, key)

    async def adelete(self, *keys: str) -> None:
        await asyncio.to_thread(self.delete, *keys)

    async def alist_folder(self, prefix: str) -> list[tuple[str, int]]:
        return await asyncio.to_thread(self.list_folder, prefix)
