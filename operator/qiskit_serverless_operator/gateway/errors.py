"""Errors in the shapes the Qiskit Serverless gateway answers with, which its client turns
into ``QiskitServerlessException`` messages (it joins the values of the JSON body).

- authentication: 401 ``{"detail": ...}`` with ``WWW-Authenticate: Bearer`` (Django REST
  framework's own shape, raised before any view runs);
- everything else: ``{"message": ...}`` (plus ``path`` for arguments that fail a schema),
  with the status the real gateway uses: 400 bad input, 403 not allowed, 404 not found
  (also for a job of someone else's namespace: existence is not revealed), 413 too large.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class GatewayError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def response(self) -> web.Response:
        return web.json_response({"message": self.message, **self.extra}, status=self.status)


class NotAuthenticated(GatewayError):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail)

    def response(self) -> web.Response:
        return web.json_response(
            {"detail": self.message}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )


def bad_request(message: str, **extra: Any) -> GatewayError:
    return GatewayError(400, message, **extra)


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, message)


def not_found(message: str) -> GatewayError:
    return GatewayError(404, message)


def too_large(message: str) -> GatewayError:
    return GatewayError(413, message)


def function_not_found(title: str, provider: str | None) -> GatewayError:
    # The real gateway's words (its client users know them).
    name = f"{provider}/{title}" if provider else title
    return not_found(f"Qiskit Function {name} doesn't exist.")


def job_not_found(job_id: str) -> GatewayError:
    return not_found(f"Job [{job_id}] not found")
