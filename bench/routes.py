"""The routes under test: which fake stands upstream, the gateway config, the two request shapes.

``openai`` is the passthrough route (OpenAI request in, OpenAI upstream), ``gemini`` the
translated one (OpenAI request in, Gemini generateContent out). ``sim`` puts the gateway's
built-in simulator behind the route; it has no upstream to call directly and draws its images
in-process, so its figures are only good for developing this harness.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.load import GEMINI_IMAGE, MIN_BODY_BYTES, OPENAI_IMAGE, Client, Target, gemini_image

PROMPT = "a red bicycle"
SIZE = "1024x1024"


@dataclass(frozen=True)
class RouteSpec:
    name: str
    title: str
    fake_kind: str | None  # module under tests.fakes; None: no upstream process
    provider_kind: str
    model: str
    base_path: str = ""  # appended to the fake's URL to make the provider's base_url
    key_env: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    min_body_bytes: int = MIN_BODY_BYTES  # the simulator draws small, cheap images

    @property
    def alias(self) -> str:
        return f"bench-{self.name}"

    def settings(self, upstream_url: str | None, hold_seconds: float = 0.0) -> dict[str, Any]:
        """The gateway config minus ``server``: one provider, one deployment, one route."""
        provider: dict[str, Any] = {"kind": self.provider_kind}
        if upstream_url is not None:
            provider["base_url"] = upstream_url + self.base_path
        if self.key_env:
            provider["keys"] = [self.key_env]
        deployment: dict[str, Any] = {"provider": f"{self.name}-upstream", "model": self.model}
        options = dict(self.options)
        if self.fake_kind is None and hold_seconds > 0:
            # The simulator has no fake to hold answers; its own latency option stands in.
            options["latency_ms"] = int(hold_seconds * 1000)
        if options:
            deployment["options"] = options
        return {
            "providers": {f"{self.name}-upstream": provider},
            "deployments": {f"{self.name}-dep": deployment},
            "routes": {self.alias: [f"{self.name}-dep"]},
        }

    def key_env_for(self, key: str) -> dict[str, str]:
        """The gateway's environment entry that carries the upstream key (none for sim)."""
        return {self.key_env: key} if self.key_env else {}

    def gateway_target(self, gateway_url: str, *, client: Client = "bytes") -> Target:
        body = {"model": self.alias, "prompt": PROMPT, "size": SIZE}
        return Target(
            name="gateway",
            url=f"{gateway_url}/v1/images/generations",
            body=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
            image_pattern=OPENAI_IMAGE,
            min_bytes=self.min_body_bytes,
            client=client,
        )

    def direct_target(
        self, upstream_url: str, key: str, *, client: Client = "bytes"
    ) -> Target | None:
        """The upstream's own wire request for the same image, straight to the fake."""
        target = self._direct_target(upstream_url, key)
        return None if target is None else dataclasses.replace(target, client=client)

    def _direct_target(self, upstream_url: str, key: str) -> Target | None:
        if self.provider_kind == "openai":
            body = {"model": self.model, "prompt": PROMPT, "size": SIZE}
            return Target(
                name="direct",
                url=f"{upstream_url}/v1/images/generations",
                body=orjson.dumps(body),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                image_pattern=OPENAI_IMAGE,
            )
        if self.provider_kind == "gemini":
            body = {
                "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                "generationConfig": {
                    "responseModalities": ["IMAGE"],
                    "imageConfig": {"aspectRatio": "1:1"},
                },
            }
            return Target(
                name="direct",
                url=f"{upstream_url}/v1beta/models/{self.model}:generateContent",
                body=orjson.dumps(body),
                headers={"Content-Type": "application/json", "x-goog-api-key": key},
                image_pattern=GEMINI_IMAGE,
                image_at=gemini_image,
            )
        return None

    def missing_fake(self) -> str | None:
        """Why the fake upstream cannot be started yet, or None."""
        if self.fake_kind is None:
            return None
        module = f"tests.fakes.{self.fake_kind}"
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        return None if found else f"{module} is not importable yet"


ROUTES: dict[str, RouteSpec] = {
    spec.name: spec
    for spec in (
        RouteSpec(
            name="openai",
            title="passthrough: OpenAI request → OpenAI upstream (FakeOpenAI)",
            fake_kind="openai",
            provider_kind="openai",
            model="gpt-image-1.5",
            base_path="/v1",
            key_env="BENCH_OPENAI_KEY",
        ),
        RouteSpec(
            name="gemini",
            title="translated: OpenAI request → Gemini generateContent (FakeGemini)",
            fake_kind="gemini",
            provider_kind="gemini",
            model="gemini-2.5-flash-image",
            base_path="/v1beta",
            key_env="BENCH_GEMINI_KEY",
        ),
        RouteSpec(
            name="sim",
            title="simulator (harness development only: images drawn in-process, no upstream)",
            fake_kind=None,
            provider_kind="simulator",
            model="sim-image",
            min_body_bytes=1_000,
        ),
    )
}
