"""Which scenario a fake upstream plays for one request, shared by every fake.

A request resolves to one scenario name, first match wins:

1. the ``x-fake-scenario`` request header;
2. the key has no quota at all (``quota_zero_keys``): the provider's quota-zero answer;
3. the key is over its per-minute image quota (``limit_keys``): the provider's rate-limit 429;
4. a scripted queue (``script``), one entry consumed per matching request, in order;
5. a sticky mode (``set_mode``), until ``clear``;
6. a random failure rate (``fail_rate``), drawn from a seeded ``random.Random``: one scenario,
   or a mix of them chosen uniformly or by weight;
7. otherwise ``"ok"``.

Quotas come before scripts and modes because a real upstream refuses at admission, before it
does anything else with a request. Script, mode and fail-rate rules may be narrowed to one
upstream model and (script, mode) to one API key. ``hold`` sets how long answers wait, globally
or per model. The counters (per scenario, per key, quota refusals) are plain increments, so
benchmarks can leave them on.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.fakes.quota import KeyQuota, QuotaRefusal

SCENARIO_HEADER = "x-fake-scenario"


class UnknownScenarioError(ValueError):
    """A scenario name the fake does not implement, from a test or a request header."""

    def __init__(self, name: str, known: frozenset[str]) -> None:
        super().__init__(f"unknown fake scenario {name!r}; known: {', '.join(sorted(known))}")
        self.name = name


@dataclass(frozen=True, slots=True)
class _Filter:
    model: str | None = None
    key: str | None = None

    def matches(self, model: str | None, key: str | None) -> bool:
        return (self.model is None or self.model == model) and (self.key is None or self.key == key)


@dataclass(frozen=True, slots=True)
class _ScriptEntry:
    name: str
    only: _Filter


@dataclass(slots=True)
class _FailRate:
    probability: float
    scenarios: tuple[str, ...]
    weights: tuple[float, ...] | None
    rng: random.Random

    def draw(self) -> str | None:
        if self.rng.random() >= self.probability:
            return None
        if len(self.scenarios) == 1:
            # No second draw: a single-scenario rate keeps the sequence it always had per seed.
            return self.scenarios[0]
        return self.rng.choices(self.scenarios, self.weights)[0]


@dataclass(frozen=True, slots=True)
class Choice:
    """The scenario for one request; ``quota`` says why a quota rule refused it, if one did."""

    name: str
    quota: QuotaRefusal | None = None


@dataclass(slots=True)
class ScenarioControl:
    """Programmable scenario choice; the fakes expose its methods as their own."""

    known: frozenset[str]
    hold_seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    _script: list[_ScriptEntry] = field(default_factory=list)
    _modes: list[tuple[_Filter, str]] = field(default_factory=list)
    _fail_rates: dict[str | None, _FailRate] = field(default_factory=dict)
    _holds: dict[str | None, float] = field(default_factory=dict)
    by_key: Counter[str] = field(default_factory=Counter)
    rate_limited_429: int = 0  # refusals by the per-key quota (limit_keys)
    _quota: KeyQuota | None = None
    _quota_scenario: str = "rate_limited"
    _zero_keys: frozenset[str] = frozenset()
    _zero_scenario: str = "quota_zero"

    def script(self, *names: str, model: str | None = None, key: str | None = None) -> None:
        """Queue scenarios for the next matching requests, one each, in order."""
        only = _Filter(model, key)
        self._script.extend(_ScriptEntry(self._checked(name), only) for name in names)

    def set_mode(self, name: str, model: str | None = None, key: str | None = None) -> None:
        """Play ``name`` for every matching request until :meth:`clear`; the latest rule wins."""
        only = _Filter(model, key)
        self._modes = [(f, n) for f, n in self._modes if f != only]
        self._modes.append((only, self._checked(name)))

    def fail_rate(
        self,
        probability: float,
        scenario: str | Sequence[str],
        seed: int = 1,
        model: str | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        """Fail with this probability; a model-specific rate beats a global one.

        ``scenario`` is one name or a mix; a failing request plays one of the mix, chosen
        uniformly or by ``weights`` (one per name, relative).
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within 0..1, got {probability}")
        names = (scenario,) if isinstance(scenario, str) else tuple(scenario)
        if not names:
            raise ValueError("a failure mix needs at least one scenario")
        if weights is not None and (
            len(weights) != len(names) or min(weights) < 0 or sum(weights) <= 0
        ):
            raise ValueError(f"need one non-negative weight per scenario, got {list(weights)}")
        self._fail_rates[model] = _FailRate(
            probability,
            tuple(self._checked(name) for name in names),
            None if weights is None else tuple(weights),
            random.Random(seed),
        )

    def limit_keys(
        self,
        images_per_minute: int | None,
        scenario: str = "rate_limited",
        window_seconds: float = 60.0,
    ) -> None:
        """Give every key this many images per rolling window; beyond it, play ``scenario``.

        None lifts the limit. A new limit starts with empty windows.
        """
        self._quota_scenario = self._checked(scenario)
        self._quota = (
            None if images_per_minute is None else KeyQuota(images_per_minute, window_seconds)
        )

    def quota_zero_keys(self, *keys: str, scenario: str = "quota_zero") -> None:
        """Requests with these keys always play ``scenario`` (replaces the previous set)."""
        self._zero_scenario = self._checked(scenario)
        self._zero_keys = frozenset(keys)

    def hold(self, seconds: float, model: str | None = None) -> None:
        """Make answers wait ``seconds`` (for one model, or as the default for all)."""
        if model is None:
            self.hold_seconds = seconds
        else:
            self._holds[model] = seconds

    def clear(self) -> None:
        """Forget scripts, modes, fail rates, quotas and per-model holds (counts are kept)."""
        self._script.clear()
        self._modes.clear()
        self._fail_rates.clear()
        self._holds.clear()
        self._quota = None
        self._zero_keys = frozenset()

    def reset_counts(self) -> None:
        """Zero the counters (per scenario, per key, quota refusals); rules and windows stay."""
        self.counts.clear()
        self.by_key.clear()
        self.rate_limited_429 = 0

    def hold_for(self, model: str | None) -> float:
        return self._holds.get(model, self.hold_seconds) if model is not None else self.hold_seconds

    def resolve(self, header: str | None, model: str | None, key: str | None) -> str:
        """Choose the scenario for one request and count it (see :meth:`decide`)."""
        return self.decide(header, model, key).name

    def decide(
        self, header: str | None, model: str | None, key: str | None, images: int = 1
    ) -> Choice:
        """Choose the scenario for one request asking for ``images`` images, and count it.

        Raises UnknownScenarioError for a header naming a scenario this fake lacks.
        """
        choice = self._choose(header, model, key, images)
        self.counts[choice.name] += 1
        if key is not None:
            self.by_key[key] += 1
        if choice.quota is not None:
            self.rate_limited_429 += 1
        return choice

    def _choose(
        self, header: str | None, model: str | None, key: str | None, images: int
    ) -> Choice:
        if header:
            return Choice(self._checked(header.strip()))
        if key is not None and key in self._zero_keys:
            return Choice(self._zero_scenario)
        if key is not None and self._quota is not None:
            refusal = self._quota.admit(key, images)
            if refusal is not None:
                return Choice(self._quota_scenario, refusal)
        return Choice(self._rule(model, key))

    def _rule(self, model: str | None, key: str | None) -> str:
        for index, entry in enumerate(self._script):
            if entry.only.matches(model, key):
                del self._script[index]
                return entry.name
        for only, name in reversed(self._modes):
            if only.matches(model, key):
                return name
        rate = self._fail_rates.get(model) or self._fail_rates.get(None)
        failed = rate.draw() if rate is not None else None
        return failed or "ok"

    def _checked(self, name: str) -> str:
        if name not in self.known:
            raise UnknownScenarioError(name, self.known)
        return name
