"""Who may use the admin API: the bearer of the admin token (named by auth.admin_token_env)."""

from __future__ import annotations

import hmac
import os

from aiohttp import web

from imagegate.core.errors import PermissionDenied, Unauthorized
from imagegate.surfaces.context import GATEWAY, bearer_token


def is_admin(http: web.Request) -> bool:
    """Whether the request carries the admin token (False when none is configured)."""
    expected = os.environ.get(http.app[GATEWAY].settings.auth.admin_token_env)
    presented = bearer_token(http)
    return bool(expected and presented and hmac.compare_digest(expected, presented))


def require_admin(http: web.Request) -> None:
    """Raises Unauthorized / PermissionDenied unless the request carries the admin token."""
    env = http.app[GATEWAY].settings.auth.admin_token_env
    if not os.environ.get(env):
        raise PermissionDenied(
            f"The admin API is off: set the environment variable {env} to a secret token and"
            " restart the gateway, then send it as the bearer token."
        )
    if bearer_token(http) is None:
        raise Unauthorized("The admin API needs the admin token as a Bearer token.")
    if not is_admin(http):
        raise Unauthorized(f"This is not the admin token (the value of {env}).")
