"""Client API keys, held only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from imagegate.config.settings import AuthSettings
from imagegate.core.errors import Unauthorized


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ClientKeys:
    digests: Mapping[str, str]  # sha256 hex → client name

    @classmethod
    def from_settings(
        cls, auth: AuthSettings, environ: Mapping[str, str] | None = None
    ) -> ClientKeys:
        env = os.environ if environ is None else environ
        digests: dict[str, str] = {}
        for key in auth.keys:
            if key.sha256 is not None:
                digests[key.sha256] = key.name
            elif key.key_env is not None and env.get(key.key_env):
                digests[digest(env[key.key_env])] = key.name
        return cls(digests)

    @property
    def required(self) -> bool:
        return bool(self.digests)

    def authenticate(self, presented: str | None) -> str | None:
        """The client's name; None when no keys are configured. Raises Unauthorized."""
        if not self.required:
            return None
        if not presented:
            raise Unauthorized(
                "You didn't provide an API key. Pass it as a Bearer token in the Authorization"
                " header (OpenAI SDK: api_key=...)."
            )
        wanted = digest(presented)
        for known, name in self.digests.items():
            if hmac.compare_digest(known, wanted):
                return name
        raise Unauthorized(f"Incorrect API key provided: {redact(presented)}.")


def redact(key: str) -> str:
    return f"{key[:3]}...{key[-4:]}" if len(key) > 10 else "***"
