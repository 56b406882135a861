"""The provider interface: ImageRequest + Deployment → ImageResult, or raise UpstreamError.

A provider is built once per deployment with the process's pooled aiohttp session. The router
chooses the upstream key (it owns pacing and rotation) and only sends requests the deployment's
capabilities allow, with `request.n <= capabilities.max_n` (it fans out larger n itself).

Inside a provider module, translation stays apart from I/O: pure functions build the upstream
request, parse a success body, and classify a failure; `generate` is a thin shell around them.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import aiohttp

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.request import ImageRequest
from imagegate.core.result import ImageResult


class Provider(Protocol):
    kind: ClassVar[str]
    default_base_url: ClassVar[str]
    needs_key: ClassVar[bool]

    deployment: Deployment
    capabilities: Capabilities

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None: ...

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        """Make `request.n` images. The caller closes the result's sources (ImageResult.aclose).

        Raises UpstreamError with its FailureKind for every failure, including connection errors
        and answers without a usable image; never returns an ImageResult with no images.
        """
        ...
