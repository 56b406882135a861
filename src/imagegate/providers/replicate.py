"""Replicate's predictions API (shared/reference/fal-replicate.md, Replicate part).

A prediction is created on one of three endpoints, chosen by the deployment:

    model `owner/name`              POST /models/{owner}/{name}/predictions   (official models)
    model `owner/name:version`      POST /predictions  with {"version": ...}   (pinned versions)
    option `deployment: owner/name` POST /deployments/{owner}/{name}/predictions

The create call carries `Prefer: wait=N` (N from the time left before the deadline, at most 60),
so most image predictions come back finished. One still `starting`/`processing` is polled on its
`urls.get` until it settles or the deadline comes; then it is cancelled (`urls.cancel`, best
effort) so that it stops running, and billing, upstream. Outputs are file URLs that expire, so
every image is downloaded at once and held like any other. The `input` itself is per model
family: replicate_inputs.py.

Deployment options: `deployment` (above), `family` (the input family of a model not listed in
replicate_inputs.MODELS: flux-2, kontext, flux-1, nano-banana, generic), `wait` (the longest
`Prefer: wait` in seconds, default 60; 0 sends none), `poll_seconds` (the first wait between
polls, default 1 s, growing by half each poll) and `poll_max_seconds` (its ceiling, 5 s), as on
the bfl and fal providers.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.request import ImageRequest
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.providers._queue import Classify, call_json, fetch_image, wait_before_poll
from imagegate.providers.replicate_failures import (
    classify_canceled,
    classify_failed,
    classify_failure,
)
from imagegate.providers.replicate_inputs import (
    FAMILIES,
    Family,
    build_input,
    family_for,
)

PROVIDER = "Replicate"
MAX_WAIT_SECONDS = 60  # the longest Prefer: wait Replicate honours
WAIT_MARGIN_SECONDS = 2.0
POLL_CEILING_SECONDS = 5.0
CANCEL_TIMEOUT_SECONDS = 5.0
# Transient poll failures in a row that end the wait (REP-SDK retries GETs on 429/503/504).
MAX_POLL_FAILURES = 3
_TRANSIENT = {FailureKind.UNAVAILABLE, FailureKind.RATE_LIMITED, FailureKind.CAPACITY}
RUNNING = ("starting", "processing")


def capabilities_for(model: str, family: str | None = None) -> Capabilities:
    return family_for(model, family).capabilities


@dataclass(frozen=True, slots=True)
class CreateCall:
    """The create-prediction request: where to POST it, its JSON body, and the mapping's warnings
    (what the model cannot honour as asked)."""

    url: str
    body: dict[str, Any]
    target: str  # what is called, for diagnoses: "model `owner/name`"
    warnings: list[str]


def build_create(request: ImageRequest, deployment: Deployment, family: Family) -> CreateCall:
    caps = deployment.capabilities or family.capabilities
    built = build_input(request, family, caps)
    base = deployment.base_url
    body: dict[str, Any] = {"input": built.input}
    name, _, version = deployment.model.partition(":")
    if (hosted := deployment.options.get("deployment")) is not None:
        url, target = f"{base}/deployments/{hosted}/predictions", f"deployment `{hosted}`"
    elif version:
        url, target = f"{base}/predictions", f"version `{deployment.model}`"
        body["version"] = version
    else:
        url, target = f"{base}/models/{name}/predictions", f"model `{name}`"
    return CreateCall(url, body, target, built.warnings)


def prefer_wait(deadline: float, now: float, most: int = MAX_WAIT_SECONDS) -> str | None:
    """`wait=N`: how long Replicate may hold the create call (1 to `most` s, at most 60).

    N ends WAIT_MARGIN_SECONDS before the deadline, so a slow prediction still comes back with
    its id in time to be cancelled; a create call cut off by our own timeout leaves a prediction
    running upstream that nobody can stop.
    """
    if most <= 0:
        return None
    left = math.floor(deadline - now - WAIT_MARGIN_SECONDS)
    return f"wait={max(1, min(most, MAX_WAIT_SECONDS, left))}"


@dataclass(frozen=True, slots=True)
class Prediction:
    id: str
    status: str
    outputs: tuple[str, ...]
    error: str | None
    get_url: str
    cancel_url: str
    predict_time: float | None


def parse_prediction(doc: Any, base_url: str) -> Prediction:
    """The fields of a prediction object that drive the loop; not one is an UNAVAILABLE."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or "status" not in doc:
        raise UpstreamError(
            FailureKind.UNAVAILABLE,
            "Replicate answered with something that is not a prediction object",
            provider_message=str(doc)[:300],
        )
    ident: str = doc["id"]
    urls = _object(doc.get("urls"))
    metrics = _object(doc.get("metrics"))
    predict_time = metrics.get("predict_time")
    error = doc.get("error")
    return Prediction(
        id=ident,
        status=str(doc["status"]),
        outputs=output_urls(doc.get("output")),
        error=None if error is None else str(error),
        get_url=str(urls.get("get") or f"{base_url}/predictions/{ident}"),
        cancel_url=str(urls.get("cancel") or f"{base_url}/predictions/{ident}/cancel"),
        predict_time=float(predict_time) if isinstance(predict_time, int | float) else None,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def output_urls(output: Any) -> tuple[str, ...]:
    """`output` is model-specific: one URL (or data URI), or a list of them."""
    if isinstance(output, str):
        return (output,)
    if isinstance(output, list):
        return tuple(item for item in output if isinstance(item, str) and item)
    return ()


def settled_outputs(prediction: Prediction) -> tuple[str, ...] | None:
    """The output URLs of a finished prediction, None while it runs; raises for the other ends.

    Statuses are REP-SDK's literal: starting, processing, succeeded, failed, canceled. An
    unknown status is taken as still running (the deadline bounds the wait).
    """
    status = prediction.status
    if status == "succeeded":
        if not prediction.outputs:
            raise UpstreamError(
                FailureKind.EMPTY,
                f"the Replicate prediction {prediction.id} succeeded with no output file",
                provider_code="succeeded",
            )
        return prediction.outputs
    if status == "failed":
        raise classify_failed(prediction.error, prediction.id)
    if status == "canceled":
        raise classify_canceled(prediction.id)
    return None


def result_notes(prediction: Prediction) -> list[str]:
    """For the ledger: the prediction (Replicate support asks for its id) and its billed run
    time, `metrics.predict_time` (Usage has no field for seconds of compute)."""
    notes = [f"replicate prediction {prediction.id}"]
    if prediction.predict_time is not None:
        notes.append(f"replicate predict_time {prediction.predict_time:.2f}s")
    return notes


def shortfall(asked: int, got: int) -> list[str]:
    """FLUX.1's safety checker drops the images it flags and returns the rest."""
    if got >= asked:
        return []
    return [f"asked for {asked} images, the model returned {got} (its safety filter may drop some)"]


class ReplicateProvider:
    kind: ClassVar[str] = "replicate"
    default_base_url: ClassVar[str] = "https://api.replicate.com/v1"
    needs_key: ClassVar[bool] = True

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        options = deployment.options
        family = options.get("family")
        if family is not None and family not in FAMILIES:
            raise ConfigError(
                [
                    f"deployments.{deployment.name}.options.family: {family!r} is not one of"
                    f" {', '.join(FAMILIES)}"
                ]
            )
        self.deployment = deployment
        self._family = family_for(deployment.model, family)
        self.capabilities = deployment.capabilities or self._family.capabilities
        self._session = session
        self._wait = int(options.get("wait", MAX_WAIT_SECONDS))
        self._first_poll = float(options.get("poll_seconds", 1.0))
        self._poll_ceiling = max(
            self._first_poll, float(options.get("poll_max_seconds", POLL_CEILING_SECONDS))
        )

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        # No deadline: the deployment's timeout bounds the whole prediction, polls included.
        deadline = request.deadline or time.monotonic() + self.deployment.timeout_seconds
        create = build_create(request, self.deployment, self._family)
        auth = {} if key is None else {"Authorization": f"Bearer {key.secret}"}
        headers = dict(auth)
        if (wait := prefer_wait(deadline, time.monotonic(), self._wait)) is not None:
            headers["Prefer"] = wait
        classify: Classify = functools.partial(classify_failure, target=create.target)
        doc, _ = await call_json(
            self._session,
            "POST",
            create.url,
            headers=headers,
            body=create.body,
            deadline=deadline,
            ceiling=self.deployment.timeout_seconds,
            provider=PROVIDER,
            classify=classify,
        )
        prediction = parse_prediction(doc, self.deployment.base_url)
        prediction, urls = await self._settle(prediction, auth, deadline, classify)
        images = await self._fetch_all(urls, deadline)
        return ImageResult(
            images=images,
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
            notes=result_notes(prediction),
            warnings=[*create.warnings, *shortfall(request.n, len(images))],
        )

    async def _settle(
        self,
        prediction: Prediction,
        auth: Mapping[str, str],
        deadline: float,
        classify: Classify,
    ) -> tuple[Prediction, tuple[str, ...]]:
        """Poll until the prediction finishes; past the deadline, cancel it and raise TIMEOUT."""
        polls = failures = 0
        while (urls := settled_outputs(prediction)) is None:
            try:
                await wait_before_poll(
                    polls,
                    first=self._first_poll,
                    ceiling=self._poll_ceiling,
                    deadline=deadline,
                    provider=PROVIDER,
                )
                doc, _ = await call_json(
                    self._session,
                    "GET",
                    prediction.get_url,
                    headers=auth,
                    deadline=deadline,
                    ceiling=self.deployment.timeout_seconds,
                    provider=PROVIDER,
                    classify=classify,
                )
            except UpstreamError as error:
                failures += 1
                polls += 1
                if error.kind in _TRANSIENT and failures < MAX_POLL_FAILURES:
                    continue
                await self._cancel(prediction, auth)
                if error.kind is FailureKind.TIMEOUT:
                    raise UpstreamError(
                        FailureKind.TIMEOUT,
                        f"the Replicate prediction {prediction.id} was still {prediction.status}"
                        " when the request's deadline came; it was cancelled upstream",
                        status=error.status,
                        provider_code=prediction.status,
                    ) from error
                raise
            except asyncio.CancelledError:
                # The caller gave up (a hedge won, the client left): stop paying for the run.
                await self._cancel(prediction, auth)
                raise
            prediction = parse_prediction(doc, self.deployment.base_url)
            polls += 1
            failures = 0
        return prediction, urls

    async def _cancel(self, prediction: Prediction, auth: Mapping[str, str]) -> None:
        """POST urls.cancel, best effort: the deadline has passed, so it gets its own short
        timeout, and whatever goes wrong is ignored (the prediction ends on its own anyway)."""
        try:
            async with self._session.post(
                prediction.cancel_url,
                headers=auth,
                timeout=aiohttp.ClientTimeout(total=CANCEL_TIMEOUT_SECONDS),
            ) as response:
                await response.read()
        except (TimeoutError, aiohttp.ClientError):
            pass

    async def _fetch_all(self, urls: Sequence[str], deadline: float) -> list[GeneratedImage]:
        """Download every output at once (the URLs expire); the first failure is raised."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(
                        fetch_image(
                            self._session,
                            url,
                            deadline=deadline,
                            ceiling=self.deployment.timeout_seconds,
                            provider=PROVIDER,
                        )
                    )
                    for url in urls
                ]
        except ExceptionGroup as group:
            upstream = [e for e in group.exceptions if isinstance(e, UpstreamError)]
            if upstream:
                raise upstream[0] from None
            raise
        return [task.result() for task in tasks]
