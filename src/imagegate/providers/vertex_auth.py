"""Where Vertex AI's OAuth access tokens come from, and how long one is kept.

A deployment names its service account by `service_account_file` (a path to the JSON key) or
`service_account_env` (an environment variable holding the JSON); with neither, Application
Default Credentials (`google.auth.default()`: GOOGLE_APPLICATION_CREDENTIALS, gcloud's user
login, the metadata server). Scope: cloud-platform (reference vertex-ai.md §2).

google-auth is blocking (it posts a signed JWT to the key's `token_uri` through `requests`),
so loading and refreshing run in a thread. A token is reused until five minutes before it
expires, and one refresh at a time runs for all the calls waiting on it. Tokens are secrets:
nothing here logs or repr()s one.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
import orjson
from google.oauth2 import service_account

from imagegate.core.errors import FailureKind, UpstreamError

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN = 300.0  # seconds before expiry when a token is no longer handed out
TOKEN_CALL_TIMEOUT = 20.0  # seconds for one call to the token endpoint
UNKNOWN_LIFETIME = 3000.0  # credentials that state no expiry: refresh within the hour anyway


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token, and the projects its credentials name (for the URL and quota header)."""

    value: str = field(repr=False)
    project: str | None = None
    quota_project: str | None = None


class _BoundedRequest(google.auth.transport.Request):
    """google-auth's requests transport with a bounded timeout (its own default is 120 s)."""

    def __init__(self) -> None:
        self._inner = google.auth.transport.requests.Request()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        limit = TOKEN_CALL_TIMEOUT if timeout is None else min(timeout, TOKEN_CALL_TIMEOUT)
        response: google.auth.transport.Response = self._inner(
            url, method, body, headers, timeout=limit, **kwargs
        )
        return response


class TokenSource:
    """Access tokens for one deployment, refreshed ahead of expiry.

    `clock` is monotonic seconds (tests pass their own). Raises UpstreamError: `auth` when the
    credentials are missing, unreadable or refused, `unavailable` when the token endpoint
    cannot be reached.
    """

    def __init__(
        self, options: Mapping[str, Any], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._options = options
        self._clock = clock
        self._lock = asyncio.Lock()
        self._credentials: google.auth.credentials.Credentials | None = None
        self._project: str | None = None
        self._transport: _BoundedRequest | None = None
        self._token: AccessToken | None = None
        self._fresh_until = 0.0  # monotonic instant after which the token is refreshed first

    async def token(self) -> AccessToken:
        token = self._token
        if token is not None and self._clock() < self._fresh_until:
            return token
        async with self._lock:
            # Another caller may have refreshed while this one waited for the lock.
            token = self._token
            if token is not None and self._clock() < self._fresh_until:
                return token
            fresh, lifetime = await asyncio.to_thread(self._refresh)
            # A token that lives under the margin (never from Google) is kept half its life.
            kept = max(lifetime - REFRESH_MARGIN, lifetime / 2)
            self._token, self._fresh_until = fresh, self._clock() + kept
            return fresh

    def invalidate(self) -> None:
        """Forget the token (the upstream refused it): the next call fetches a new one."""
        self._fresh_until = 0.0

    # --- blocking: run in a thread ----------------------------------------------------------

    def _refresh(self) -> tuple[AccessToken, float]:
        if self._credentials is None:
            self._credentials, self._project = self._load()
            self._transport = _BoundedRequest()
        credentials = self._credentials
        assert self._transport is not None
        try:
            credentials.refresh(self._transport)  # type: ignore[no-untyped-call]  # google-auth
        except google.auth.exceptions.TransportError as exc:
            raise UpstreamError(
                FailureKind.UNAVAILABLE,
                f"cannot reach Google's OAuth token endpoint ({type(exc).__name__}); check the"
                " network path to the service account's token_uri",
            ) from None
        except google.auth.exceptions.RefreshError as exc:
            raise UpstreamError(
                FailureKind.AUTH,
                "Google refused to issue an access token for the Vertex AI credentials"
                f" ({_reason(exc)}); the service account key may be deleted or disabled",
                provider_code="token_refresh",
            ) from None
        token = credentials.token
        if not token:
            raise UpstreamError(FailureKind.AUTH, "Google's token endpoint returned no token")
        quota_project = getattr(credentials, "quota_project_id", None)
        access = AccessToken(str(token), self._project, quota_project)
        return access, _seconds_left(credentials.expiry)

    def _load(self) -> tuple[google.auth.credentials.Credentials, str | None]:
        info = self._service_account_info()
        if info is not None:
            try:
                credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]  # google-auth
                    info, scopes=[CLOUD_PLATFORM]
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise _config_problem(f"the service account JSON is not usable ({exc})") from None
            project = info.get("project_id")
            return credentials, str(project) if project else None
        try:
            credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM])
        except google.auth.exceptions.DefaultCredentialsError:
            raise _config_problem(
                "no Google credentials: set the deployment option service_account_file or"
                " service_account_env, or Application Default Credentials"
                " (GOOGLE_APPLICATION_CREDENTIALS)"
            ) from None
        return credentials, project

    def _service_account_info(self) -> dict[str, Any] | None:
        path = self._options.get("service_account_file")
        env = self._options.get("service_account_env")
        if path:
            try:
                with open(path, "rb") as file:
                    raw = file.read()
            except OSError as exc:
                raise _config_problem(
                    f"cannot read service_account_file {path!r} ({exc.strerror})"
                ) from None
            where = f"the file {path!r}"
        elif env:
            value = os.environ.get(str(env))
            if not value:
                raise _config_problem(
                    f"the environment variable {env} (service_account_env) is empty"
                )
            raw, where = value.encode(), f"the environment variable {env}"
        else:
            return None
        try:
            info = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _config_problem(f"{where} does not hold service account JSON") from None
        if not isinstance(info, dict):
            raise _config_problem(f"{where} does not hold a service account JSON object")
        return info


def _seconds_left(expiry: datetime.datetime | None) -> float:
    if expiry is None:
        return UNKNOWN_LIFETIME
    # google-auth keeps expiry as a naive UTC datetime.
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return (expiry - now).total_seconds()


def _reason(exc: google.auth.exceptions.RefreshError) -> str:
    """The OAuth error code only (e.g. invalid_grant), never the response body."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.split(":", 1)[0][:120]


def _config_problem(what: str) -> UpstreamError:
    return UpstreamError(FailureKind.AUTH, f"Vertex AI credentials: {what}")
