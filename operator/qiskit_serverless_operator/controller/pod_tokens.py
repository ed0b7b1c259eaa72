"""Job pods' tokens for the job endpoint, made when a job is admitted.

The job endpoint knows a pod by its token's digest in the job's status (``tokenSha256``).
Made at the start, the digest was a status write of its own between the admission and the
batch Job: a write, a watch event and a round trip before every pod. Made at the admission,
it rides in the admission's write, and the start takes the token from here to put it in
the pod's Secret. A token that is not here (the operator restarted, or another replica
admitted the job) is made again at the start, and its digest written then, as before.
"""

from __future__ import annotations

import secrets
import time

from .jobspec import token_digest

# An admitted job is started within moments; a token older than this is never taken.
HOLD_SECONDS = 600.0

_held: dict[str, tuple[str, float]] = {}  # the job's UID: (token, made at, monotonic)


def new_token(namespace: str, name: str) -> str:
    """A pod's token: the job it speaks for, and 256 random bits."""
    return f"{namespace}.{name}.{secrets.token_urlsafe(32)}"


def issue(namespace: str, name: str, uid: str) -> str:
    """A new token for the job's pod, held for its start; its digest, for the status."""
    now = time.monotonic()
    for old in [u for u, (_, at) in _held.items() if now - at > HOLD_SECONDS]:
        del _held[old]
    token = new_token(namespace, name)
    _held[uid] = (token, now)
    return token_digest(token)


def take(uid: str, digest: str | None) -> str | None:
    """The token issued for the job, if it is the one its status has the digest of."""
    token, _ = _held.pop(uid, (None, 0.0))
    if token is None or digest is None or token_digest(token) != digest:
        return None
    return token
