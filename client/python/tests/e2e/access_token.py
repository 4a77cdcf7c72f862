"""Access tokens for the --dev livekit-server of harness.py, with the standard library only (the
SDK-matrix virtualenvs carry no livekit-api): HS256 over the claims livekit-api would write."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from harness import API_KEY, API_SECRET


def access_token(identity: str, room: str, **claims: Any) -> str:
    """A join token for `room` (publish, subscribe, data); `claims` adds top-level claims such as
    metadata="..." or attributes={...}, which the server hands to every participant."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    body = {
        "iss": API_KEY, "sub": identity, "name": identity, "nbf": now - 10, "exp": now + 3600,
        "video": {"room": room, "roomJoin": True, "canPublish": True, "canSubscribe": True, "canPublishData": True},
        **claims,
    }
    signing = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(body).encode())}"
    return f"{signing}.{b64(hmac.new(API_SECRET.encode(), signing.encode(), hashlib.sha256).digest())}"
