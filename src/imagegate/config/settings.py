"""The typed configuration file. Unknown fields are errors; every error names its field's path."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from imagegate.catalog.schema import CapabilitySettings, ModelSettings

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    public_url: str | None = None  # base of image URLs handed to clients; default http://host:port
    data_dir: str = "./imagegate-data"
    max_body_mb: Annotated[float, Field(gt=0, le=1024)] = 64.0
    request_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 300.0
    image_url_ttl_seconds: Annotated[int, Field(gt=0)] = 3600
    max_prompt_chars: Annotated[int, Field(gt=0)] = 32000


class ClientKeySettings(_Strict):
    """A static client API key: given by the env var that holds it, or by its SHA-256 hex digest.

    Keys made with `imagegate keys create` live in the database; these bootstrap keys take the
    same limits and budgets, and are booked in the ledger as `config:<name>`.
    """

    name: str
    key_env: str | None = None
    sha256: str | None = None
    routes: list[str] | None = None  # None: every route
    requests_per_minute: Annotated[int, Field(gt=0)] | None = None
    images_per_minute: Annotated[int, Field(gt=0)] | None = None
    budget_usd_per_day: Annotated[float, Field(ge=0)] | None = None
    budget_usd_per_month: Annotated[float, Field(ge=0)] | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be 64 lowercase hex characters (sha256 of the key)")
        return value


class AuthSettings(_Strict):
    """With no keys, the gateway is open (it then refuses to listen beyond loopback)."""

    keys: list[ClientKeySettings] = []
    allow_open_on_public_interface: bool = False
    # The admin API (/v1/admin/keys, all of /v1/usage) answers only to this token; unset: off.
    admin_token_env: str = "IMAGEGATE_ADMIN_TOKEN"


class DatabaseSettings(_Strict):
    """Where keys and the ledger live: SQLite in data_dir unless a URL is given.

    `url_env` names an environment variable holding the URL (it may carry a password);
    `search_path` puts the tables in that PostgreSQL schema (created if missing).
    """

    url: str | None = None
    url_env: str | None = None
    search_path: str | None = None

    @field_validator("search_path")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be a plain identifier (letters, digits, underscores)")
        return value


class LedgerSettings(_Strict):
    """How bookings are made durable before an answer goes out (docs/ledger.md, "Durability").

    `process`: one append to the journal, in the OS page cache: survives a killed process.
    `fsync`: the append is also flushed to the disk: survives a machine crash, at a disk flush
    per request.
    """

    durability: Literal["process", "fsync"] = "process"


class ProviderSettings(_Strict):
    kind: str
    base_url: str | None = None
    keys: list[str] = []  # names of environment variables, one per upstream key of the pool
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    options: dict[str, Any] = {}

    @field_validator("keys")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not an environment variable name; keys are referenced by the"
                    " name of the variable that holds them, never written in the file"
                )
        return value


class LimitSettings(_Strict):
    images_per_minute: Annotated[int, Field(gt=0)] | None = None
    requests_per_minute: Annotated[int, Field(gt=0)] | None = None
    requests_per_day: Annotated[int, Field(gt=0)] | None = None
    concurrency: Annotated[int, Field(gt=0)] | None = None


_USD = Annotated[float, Field(ge=0)]


class PriceSettings(_Strict):
    """List prices in USD; `ledger/pricing.py` documents how they combine."""

    per_image: _USD = 0.0
    # keys: a tier (1K), a pixel size (1536x1024), either with /quality (1536x1024/high)
    per_image_by_tier: dict[str, _USD] = {}
    per_image_by_quality: dict[str, _USD] = {}
    per_input_image: _USD = 0.0
    per_million_input_tokens: _USD = 0.0
    per_million_input_text_tokens: _USD | None = None  # None: per_million_input_tokens
    per_million_input_image_tokens: _USD | None = None  # None: per_million_input_tokens
    per_million_output_text_tokens: _USD = 0.0
    per_million_output_image_tokens: _USD = 0.0
    batch_discount: Annotated[float, Field(ge=0, lt=1)] = 0.0  # share off for batch requests


class ProbeSettings(_Strict):
    """Active probes: a minimal image request every interval, off unless configured.

    Each probe is a real, billed call: `max_per_day` and `max_usd_per_day` (priced at the
    deployment's per_image price) cap what probing may spend; the first cap reached wins.
    """

    interval_seconds: Annotated[float, Field(ge=1)] = 300.0
    max_per_day: Annotated[int, Field(ge=1)] = 96
    max_usd_per_day: Annotated[float, Field(ge=0)] | None = None


class DeploymentSettings(_Strict):
    provider: str
    model: str
    limits: LimitSettings = LimitSettings()
    price: PriceSettings = PriceSettings()
    options: dict[str, Any] = {}
    probe: ProbeSettings | None = None
    # laid over the model catalog's capabilities for this deployment (or the provider's own)
    capabilities: CapabilitySettings | None = None


class BreakerSettings(_Strict):
    """When a deployment's circuit breaker opens, and for how long (per deployment)."""

    consecutive_failures: Annotated[int, Field(ge=1)] = 8
    error_rate: Annotated[float, Field(gt=0, le=1)] = 0.6
    window: Annotated[int, Field(ge=2)] = 40
    min_calls: Annotated[int, Field(ge=1)] = 20
    open_seconds: Annotated[float, Field(gt=0)] = 10.0
    max_open_seconds: Annotated[float, Field(gt=0)] = 300.0


class HedgeSettings(_Strict):
    """Start the next candidate once an attempt runs past this latency percentile."""

    percentile: Annotated[float, Field(ge=50, le=99.9)] = 90.0
    min_seconds: Annotated[float, Field(ge=0)] = 1.0  # never hedge sooner than this
    initial_seconds: Annotated[float, Field(gt=0)] = 30.0  # until a deployment has latency history


class RouteSettings(_Strict):
    candidates: Annotated[list[str], Field(min_length=1)]
    description: str | None = None
    # Safety blocks end the request by default: another model would often draw what one refused.
    fall_over_on_safety: bool = False
    # deployment → its sibling model variant, tried first on quota_stuck and capacity
    # (e.g. gemini-3.1-flash-image ↔ gemini-2.5-flash-image); the sibling need not be a candidate.
    variants: dict[str, str] = {}
    retries: dict[
        str, Annotated[int, Field(ge=0, le=5)]
    ] = {}  # failure kind → same-deployment retries
    hedge: HedgeSettings | None = None
    # An image whose geometry is not what was asked (checked on every image, from its header):
    # fall_over to the next candidate, fail the request with `mismatch`, or accept it with a note.
    on_mismatch: Literal["fall_over", "fail", "accept"] = "fall_over"
    # Resize an image of the right aspect but another pixel size to exactly the size asked for
    # (Gemini frames 1536x1024 as 3:2 at 1264x848). Off: the image is served as made, noted.
    resize: bool = False


class LifecycleSettings(_Strict):
    """What happens to a request for a model the catalog says is retired.

    `successor`: the catalog's successor serves it, with an `x-imagegate-warning` header.
    `refuse`: a 404 `model_retired` error naming the successor; no upstream is called.
    """

    on_retired: Literal["successor", "refuse"] = "successor"


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    database: DatabaseSettings = DatabaseSettings()
    ledger: LedgerSettings = LedgerSettings()
    breaker: BreakerSettings = BreakerSettings()
    providers: dict[str, ProviderSettings] = {}
    deployments: dict[str, DeploymentSettings] = {}
    routes: dict[str, RouteSettings] = {}
    lifecycle: LifecycleSettings = LifecycleSettings()
    # provider kind → model → entry, laid over the shipped catalog (imagegate/catalog/data)
    catalog: dict[str, dict[str, ModelSettings]] = {}

    @field_validator("routes", mode="before")
    @classmethod
    def _route_shorthand(cls, value: Any) -> Any:
        # `routes: {alias: [dep-a, dep-b]}` is shorthand for `{alias: {candidates: [...]}}`.
        if isinstance(value, dict):
            return {k: {"candidates": v} if isinstance(v, list) else v for k, v in value.items()}
        return value

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir).expanduser()

    def database_url(self, environ: Mapping[str, str] | None = None) -> str:
        """The configured database URL; SQLite in data_dir by default."""
        env = os.environ if environ is None else environ
        if self.database.url_env is not None and env.get(self.database.url_env):
            return env[self.database.url_env]
        if self.database.url is not None:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_path / 'imagegate.db').resolve()}"
