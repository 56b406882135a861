"""Client keys: the static ones from the config file and the ones made with `imagegate keys`.

Both are held only as SHA-256 digests. Database keys are looked up per request, so revoking a
key takes effect at once through this process's admin API, and within a second (the key cache's
lifetime) from the CLI or another replica.
"""

from __future__ import annotations

import datetime
import hmac
import os
import time
from collections.abc import Callable, Mapping

from imagegate.config.settings import AuthSettings
from imagegate.core.errors import Unauthorized
from imagegate.ledger.pricing import to_micros
from imagegate.state.keys import ClientKey, KeyStore, digest

# How long "no database key exists" is believed before asking again. Only the open (keyless,
# loopback-only) mode relies on it: a key made by the CLI closes the gateway within this time.
OPEN_RECHECK_SECONDS = 2.0

__all__ = ["ClientKeys", "digest", "redact"]


class ClientKeys:
    def __init__(
        self,
        static: Mapping[str, ClientKey],  # sha256 hex → key
        store: KeyStore | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.static = dict(static)
        self.store = store
        self._clock = clock
        self._open_until = 0.0  # monotonic time until which the gateway is known to be open

    @classmethod
    def from_settings(
        cls,
        auth: AuthSettings,
        store: KeyStore | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientKeys:
        env = os.environ if environ is None else environ
        static: dict[str, ClientKey] = {}
        for spec in auth.keys:
            key_id = f"config:{spec.name}"
            key = ClientKey(
                id=key_id,
                name=spec.name,
                prefix="(config)",
                routes=None if spec.routes is None else tuple(spec.routes),
                requests_per_minute=spec.requests_per_minute,
                images_per_minute=spec.images_per_minute,
                budget_day_micros=_micros(spec.budget_usd_per_day),
                budget_month_micros=_micros(spec.budget_usd_per_month),
                lineage=key_id,
                source="config",
            )
            if spec.sha256 is not None:
                static[spec.sha256] = key
            elif spec.key_env is not None and env.get(spec.key_env):
                static[digest(env[spec.key_env])] = key
        return cls(static, store)

    async def required(self) -> bool:
        """Whether a request must present a key: any static key, or any live database key."""
        if self.static:
            return True
        if self.store is None or self._clock() < self._open_until:
            return False
        if await self.store.any_active():
            return True
        self._open_until = self._clock() + OPEN_RECHECK_SECONDS
        return False

    def keys_changed(self) -> None:
        """A key was made or revoked in this process: stop believing the gateway is open."""
        self._open_until = 0.0

    async def authenticate(self, presented: str | None) -> ClientKey | None:
        """The client's key; None when the gateway is open. Raises Unauthorized."""
        if presented:
            key = await self._find(presented)
            if key is not None:
                return _usable(key, presented)
        if not await self.required():
            return None
        if not presented:
            raise Unauthorized(
                "You didn't provide an API key. Pass it as a Bearer token in the Authorization"
                " header (OpenAI SDK: api_key=...)."
            )
        raise Unauthorized(f"Incorrect API key provided: {redact(presented)}.")

    async def _find(self, presented: str) -> ClientKey | None:
        wanted = digest(presented)
        for known, key in self.static.items():
            if hmac.compare_digest(known, wanted):
                return key
        if self.store is None:
            return None
        # The digest is the lookup key: an index hit on a hash reveals nothing about the secret.
        return await self.store.by_digest(wanted)


def _usable(key: ClientKey, presented: str) -> ClientKey:
    now = datetime.datetime.now(datetime.UTC)
    status = key.status(now)
    if status == "revoked":
        raise Unauthorized(
            f"The API key {redact(presented)} ({key.name}) has been revoked. Ask the gateway's"
            " operator for a new one."
        )
    if status == "expired":
        when = key.expires_at.isoformat() if key.expires_at is not None else "?"
        raise Unauthorized(f"The API key {redact(presented)} ({key.name}) expired at {when}.")
    return key


def _micros(usd: float | None) -> int | None:
    return None if usd is None else to_micros(usd)


def redact(key: str) -> str:
    return f"{key[:3]}...{key[-4:]}" if len(key) > 10 else "***"
