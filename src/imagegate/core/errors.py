"""The error family.

    ImagegateError
    ├── ClientError              safe to show the client as is; rendered by each surface
    │   ├── InvalidRequest         400, names the offending parameter
    │   ├── PayloadTooLarge        413
    │   ├── Unauthorized           401
    │   ├── PermissionDenied       403, the client key may not use this route
    │   ├── ModelNotFound          404, lists the models that exist
    │   ├── ModelRetired           404, the catalog retired it; names the successor
    │   ├── DuplicateRequest       409, an Idempotency-Key already ran or is running
    │   ├── ClientRateLimited      429, the client key's own RPM/IPM limit; says when it resets
    │   ├── BudgetExceeded         429, the client key's day/month budget; says when it resets
    │   └── UnsupportedRequest     400, no candidate can serve a field of the request
    ├── UpstreamError            one failed upstream attempt: FailureKind, status, provider code
    │                            and message, retry hint, diagnosis (what is wrong, and the fix)
    ├── AllCandidatesFailed      every candidate failed; carries the attempts in order
    ├── NoCapacity               (router/pacer.py) no upstream quota before the deadline
    ├── ConfigError              the configuration is wrong; names the field's path
    └── StorageError             an image could not be stored or read back

Only ClientError, and the diagnosis of UpstreamError / AllCandidatesFailed, reach a client. Raw
upstream bodies go to logs only, with keys redacted.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagegate.core.request import ImageRequest
    from imagegate.core.result import Attempt


class FailureKind(enum.StrEnum):
    """What went wrong with an upstream attempt; the router decides on it (router/decide.py)."""

    QUOTA_ZERO = "quota_zero"
    RATE_LIMITED = "rate_limited"
    QUOTA_STUCK = "quota_stuck"
    CAPACITY = "capacity"
    BILLING = "billing"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    SAFETY = "safety"
    EMPTY = "empty"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    MISMATCH = "mismatch"


class ImagegateError(Exception):
    """Base of every error imagegate raises on purpose."""


class ClientError(ImagegateError):
    """A problem with the client's request. Its message is written for the client."""

    status = 400
    code = "invalid_request"
    retry_after: float | None = None  # seconds, for refusals that end at a known time

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(ClientError):
    status = 400
    code = "invalid_value"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class Unauthorized(ClientError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    code = "route_not_allowed"


class DuplicateRequest(ClientError):
    status = 409
    code = "idempotency_key_reused"


class ClientRateLimited(ClientError):
    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceeded(ClientError):
    status = 429
    code = "budget_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class ModelRetired(ClientError):
    """The model was retired upstream; the message names its successor."""

    status = 404
    code = "model_retired"


class UnsupportedRequest(ClientError):
    status = 400
    code = "unsupported_value"


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    deployment: str
    kind: FailureKind
    status: int | None
    diagnosis: str


class UpstreamError(ImagegateError):
    """One upstream attempt failed.

    `retry_after` is the upstream's own hint in seconds (RetryInfo, Retry-After), if it gave one.
    `diagnosis` says what is wrong and how to fix it, in plain words, safe for the client; the raw
    `provider_message` stays in logs. `repair` is a corrected request worth one more try.
    """

    def __init__(
        self,
        kind: FailureKind,
        diagnosis: str,
        *,
        status: int | None = None,
        provider_code: str | None = None,
        provider_message: str | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        repair: ImageRequest | None = None,
        repair_note: str | None = None,
    ) -> None:
        super().__init__(f"{kind}: {diagnosis}")
        self.kind = kind
        self.diagnosis = diagnosis
        self.status = status
        self.provider_code = provider_code
        self.provider_message = provider_message
        self.retry_after = retry_after
        self.param = param
        # A provider that knows why its upstream failed (e.g. a 200 without an image because the
        # response modalities lacked IMAGE) hands back the corrected request; the router retries
        # it once and tells the client what was fixed.
        self.repair = repair
        self.repair_note = repair_note
        self.deployment: str | None = None


class AllCandidatesFailed(ImagegateError):
    """Every candidate of the route failed. `final` is the failure the client is told about.

    `attempts` are the failures in order (what the client is shown); `records` are every call
    the router made, successes included (parts of n that arrived before the rest failed), with
    key ids and latency, for the ledger.
    """

    def __init__(
        self,
        final: UpstreamError,
        attempts: Sequence[AttemptFailure],
        records: Sequence[Attempt] = (),
    ) -> None:
        super().__init__(final.diagnosis)
        self.final = final
        self.attempts = list(attempts)
        self.records = list(records)


class ConfigError(ImagegateError):
    """The configuration is wrong. Each problem names the path of the field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class StorageError(ImagegateError):
    """An image could not be stored or read back."""
