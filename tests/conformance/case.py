"""What a provider brings to the conformance suite: its fake, a deployment, what its fake saw.

Each provider module has one `tests/conformance/cases/<kind>.py` defining `CASES`: a list of
ProviderCase (one per model family worth exercising). The suite (test_conformance.py) runs the
same checks over every case, driven by the capabilities the provider declares for that model:
every declared size, aspect ratio, tier, output format, quality, n, input-image count, mask,
seed and transparent background is asked for and checked in the pixels or in what the fake
received; every listed scenario must end in its FailureKind (or succeed, for `None`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagegate.core.errors import FailureKind
from imagegate.providers.base import Provider
from tests.fakes.server import FakeUpstream


@dataclass(frozen=True, slots=True)
class Sent:
    """One upstream call as the fake received it, in provider-neutral terms.

    `images` are the input images' bytes as they reached the upstream. `mask` is the mask as
    the upstream received it, and `mask_convention` says how to read it: "alpha" (OpenAI:
    alpha 0 = edit) or "white" (white = edit, black = keep). `n` is images asked in this call.
    """

    prompt: str
    n: int = 1
    seed: int | None = None
    images: tuple[bytes, ...] = ()
    mask: bytes | None = None
    mask_convention: str = "white"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderCase:
    id: str  # the pytest id: "<kind>/<model>"
    kind: str  # the provider kind in providers/registry.py
    model: str  # the upstream model
    make_fake: Callable[[], FakeUpstream]  # a fresh fake, not started
    # The calls that made images (submit calls, not polls), oldest first.
    sent: Callable[[FakeUpstream], list[Sent]]
    base_path: str = ""  # appended to the fake's base URL to form the deployment's base_url
    key: str | None = "conformance-key"
    options: Mapping[str, Any] = field(default_factory=dict)
    # fake scenario → the FailureKind the provider must raise (None: it must succeed)
    scenarios: Mapping[str, FailureKind | None] = field(default_factory=dict)
    # the scenario in which the fake returns a 1024×1024 image whatever was asked
    wrong_size_scenario: str | None = "wrong_size"
    # sizes to try when the model makes arbitrary sizes (the declared lists cover the rest)
    arbitrary_sizes: tuple[str, ...] = ("1536x1024", "1024x1536")
    # hook run after the fake starts: e.g. configure a fake to move through async states fast
    prepare: Callable[[FakeUpstream], None] | None = None
    # for providers with no HTTP upstream (local pipelines): what the provider itself sent on
    sent_by_provider: Callable[[Provider], list[Sent]] | None = None
