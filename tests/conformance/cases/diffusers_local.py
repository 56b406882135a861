"""The local diffusers provider on a tiny random-weight Stable Diffusion pipeline (on CPU).

There is no upstream to fake: the "upstream" is the pipeline folder, built once per test
process (tests/fakes/tiny_pipeline.py) when the first case's fake is made. The fake the harness
starts serves nothing; what reached the upstream is what the provider handed the pipeline
(`provider.last_call`: its arguments, init image and mask). The case is left out when the `local` extra is not installed.
"""

from __future__ import annotations

import importlib.util
import io
from typing import ClassVar

from aiohttp import web
from PIL import Image

from imagegate.providers.base import Provider
from imagegate.providers.diffusers_local import LocalDiffusersProvider
from tests.conformance.case import ProviderCase, Sent
from tests.fakes.server import FakeUpstream
from tests.fakes.tiny_pipeline import SHARED_FOLDER, shared_tiny_pipeline


class NoUpstream(FakeUpstream):
    """A fake with no routes: the local provider never makes an HTTP call."""

    scenario_names: ClassVar[frozenset[str]] = frozenset({"ok"})
    quota_zero_scenario: ClassVar[str] = "ok"

    def _add_routes(self, app: web.Application) -> None:
        pass


def make_fake() -> NoUpstream:
    shared_tiny_pipeline()  # the pipeline folder the deployment's options name
    return NoUpstream()


def sent_local(provider: Provider) -> list[Sent]:
    """The provider's last pipeline call, as the upstream call it stands for."""
    assert isinstance(provider, LocalDiffusersProvider)
    call = provider.last_call
    if call is None:
        return []
    plan = call.plan
    return [
        Sent(
            prompt=plan.prompt,
            n=plan.n,
            seed=plan.seed,
            images=() if call.image is None else (_png(call.image),),
            mask=None if call.mask is None else _png(call.mask),
            mask_convention="white",
            extra=dict(call.arguments),
        )
    ]


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


CASES = (
    []
    if importlib.util.find_spec("diffusers") is None
    else [
        ProviderCase(
            id="local/tiny-sd",
            kind="local",
            model="tiny-sd",
            make_fake=make_fake,
            sent=lambda fake: [],
            sent_by_provider=sent_local,
            key=None,
            # Sizes stay small so the suite runs in seconds on a CPU: max_edge 256 declares
            # the 512 tier only (a 512-tier image shrunk to 256 px is still that tier).
            options={"path": str(SHARED_FOLDER), "steps": 2, "max_edge": 256, "max_n": 2},
            scenarios={},  # no upstream states: load and run failures are unit-tested
            wrong_size_scenario=None,  # the pipeline makes the size it is given
            arbitrary_sizes=("96x64", "64x96", "128x128", "256x136"),
        )
    ]
)
