"""The shipped model catalog and the config's overrides of it."""

from __future__ import annotations

import datetime

import pytest

from imagegate.catalog import Catalog
from imagegate.catalog.catalog import load_shipped
from imagegate.catalog.schema import ModelSettings
from imagegate.config.loader import parse_settings
from imagegate.core.errors import ConfigError
from imagegate.gateway import configured_deployments
from imagegate.providers import registry


def test_every_shipped_file_is_for_a_known_provider_kind() -> None:
    for kind in load_shipped():
        assert kind in registry.KINDS, f"catalog/data/{kind}.yaml names an unknown kind"


def test_every_priced_entry_says_where_the_price_comes_from_and_when() -> None:
    for entry in Catalog.shipped().entries():
        if entry.price is not None:
            assert entry.price_source, f"{entry.kind}/{entry.model} has a price without a source"
            assert entry.price_date is not None, f"{entry.kind}/{entry.model}: price_date"


def test_every_retired_model_names_a_successor_the_catalog_knows() -> None:
    catalog = Catalog.shipped()
    retired = [e for e in catalog.entries() if e.retired_on is not None]
    assert retired, "the shipped catalog retires the models the references say were shut down"
    for entry in retired:
        assert entry.successor is not None, f"{entry.kind}/{entry.model}"
        successor = catalog.find(entry.kind, entry.successor)
        assert successor is not None and successor.retired_on is None


def test_openai_shutdowns_are_in_the_catalog_with_their_dates() -> None:
    catalog = Catalog.shipped()
    gpt1 = catalog.find("openai", "gpt-image-1")
    assert gpt1 is not None and gpt1.retired_on == datetime.date(2026, 10, 23)
    assert gpt1.retirement(datetime.date(2026, 10, 22)) is None
    gone = gpt1.retirement(datetime.date(2026, 11, 21))
    assert gone is not None and "gpt-image-1.5" in gone.message()


def test_like_inherits_capabilities_and_price_but_not_lifecycle() -> None:
    catalog = Catalog.shipped()
    base = catalog.find("openai", "gpt-image-1.5")
    mini = catalog.find("openai", "gpt-image-1-mini")
    two = catalog.find("openai", "gpt-image-2")
    assert base is not None and mini is not None and two is not None
    assert mini.capabilities == base.capabilities
    assert mini.price is not None and base.price is not None and mini.price != base.price
    assert two.capabilities is not None and two.capabilities.arbitrary_sizes
    assert two.capabilities.sizes is None  # `sizes: null` overrides the inherited list
    retired = catalog.find("openai", "dall-e-3")
    assert retired is not None and retired.lifecycle == "retired"
    assert catalog.find("openai", "gpt-image-1.5").lifecycle == "stable"  # type: ignore[union-attr]


def test_config_overrides_extend_and_change_the_catalog() -> None:
    catalog = Catalog.shipped().with_overrides(
        {
            "openai": {
                "gpt-image-1.5": ModelSettings.model_validate(
                    {"capabilities": {"max_n": 4}, "lifecycle": "deprecated"}
                ),
                "my-tuned-image": ModelSettings.model_validate({"like": "gpt-image-2"}),
            }
        }
    )
    changed = catalog.find("openai", "gpt-image-1.5")
    assert changed is not None and changed.capabilities is not None
    assert changed.capabilities.max_n == 4 and changed.lifecycle == "deprecated"
    assert changed.capabilities.sizes == ("1024x1024", "1536x1024", "1024x1536")  # kept
    tuned = catalog.find("openai", "my-tuned-image")
    assert tuned is not None and tuned.capabilities is not None
    assert tuned.capabilities.arbitrary_sizes


def test_a_like_loop_or_a_missing_base_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="loops"):
        Catalog(
            {
                "openai": {
                    "a": ModelSettings.model_validate({"like": "b"}),
                    "b": ModelSettings.model_validate({"like": "a"}),
                }
            }
        )
    with pytest.raises(ConfigError, match="no entry"):
        Catalog({"openai": {"a": ModelSettings.model_validate({"like": "nowhere"})}})


def _settings(extra: dict[str, object]) -> dict[str, object]:
    return {
        "providers": {"oa": {"kind": "openai", "keys": ["OA_KEY"]}},
        "deployments": {"gpt": {"provider": "oa", "model": "gpt-image-1.5", **extra}},
        "routes": {"image": ["gpt"]},
    }


def test_deployments_take_catalog_capabilities_and_prices_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OA_KEY", "sk-test")
    plain = configured_deployments(parse_settings(_settings({}), source="t"))["gpt"]
    assert plain.price.per_image_by_tier["1536x1024/high"] == 0.25
    assert plain.capabilities is not None and plain.capabilities.max_input_images == 16
    configured = configured_deployments(
        parse_settings(
            _settings({"price": {"per_image": 0.5}, "capabilities": {"sizes": ["1024x1024"]}}),
            source="t",
        )
    )["gpt"]
    assert configured.price.per_image == 0.5 and not configured.price.per_image_by_tier
    assert configured.capabilities is not None
    assert configured.capabilities.sizes == ("1024x1024",)
    assert configured.capabilities.mask  # the rest is still the catalog's


def test_an_unknown_capability_field_in_config_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(_settings({"capabilities": {"colour": True}}), source="t")
    assert "deployments.gpt.capabilities.colour: unknown field" in caught.value.problems
