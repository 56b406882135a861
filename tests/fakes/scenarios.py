"""Which scenario a fake upstream plays for one request, shared by every fake.

A request resolves to one scenario name, first match wins:

1. the ``x-fake-scenario`` request header;
2. a scripted queue (``script``), one entry consumed per matching request, in order;
3. a sticky mode (``set_mode``), until ``clear``;
4. a random failure rate (``fail_rate``), drawn from a seeded ``random.Random``;
5. otherwise ``"ok"``.

Script, mode and fail-rate rules may be narrowed to one upstream model and (script, mode) to one
API key. ``hold`` sets how long answers wait, globally or per model.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

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
    scenario: str
    rng: random.Random


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
        self, probability: float, scenario: str, seed: int = 1, model: str | None = None
    ) -> None:
        """Play ``scenario`` with this probability; a model-specific rate beats a global one."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within 0..1, got {probability}")
        self._fail_rates[model] = _FailRate(
            probability, self._checked(scenario), random.Random(seed)
        )

    def hold(self, seconds: float, model: str | None = None) -> None:
        """Make answers wait ``seconds`` (for one model, or as the default for all)."""
        if model is None:
            self.hold_seconds = seconds
        else:
            self._holds[model] = seconds

    def clear(self) -> None:
        """Forget scripts, modes, fail rates and per-model holds (counts are kept)."""
        self._script.clear()
        self._modes.clear()
        self._fail_rates.clear()
        self._holds.clear()

    def hold_for(self, model: str | None) -> float:
        return self._holds.get(model, self.hold_seconds) if model is not None else self.hold_seconds

    def resolve(self, header: str | None, model: str | None, key: str | None) -> str:
        """Choose the scenario for one request and count it.

        Raises UnknownScenarioError for a header naming a scenario this fake lacks.
        """
        name = self._choose(header, model, key)
        self.counts[name] += 1
        return name

    def _choose(self, header: str | None, model: str | None, key: str | None) -> str:
        if header:
            return self._checked(header.strip())
        for index, entry in enumerate(self._script):
            if entry.only.matches(model, key):
                del self._script[index]
                return entry.name
        for only, name in reversed(self._modes):
            if only.matches(model, key):
                return name
        rate = self._fail_rates.get(model) or self._fail_rates.get(None)
        if rate is not None and rate.rng.random() < rate.probability:
            return rate.scenario
        return "ok"

    def _checked(self, name: str) -> str:
        if name not in self.known:
            raise UnknownScenarioError(name, self.known)
        return name
