"""Output geometry: pixel sizes, aspect ratios and resolution tiers, and the maps between them."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
_RATIO = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")

TIERS = ("512", "1K", "2K", "4K")
# Longest edge of each tier, used both to pick a tier for a pixel size and to check results.
TIER_EDGE = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def aspect(self) -> float:
        return self.width / self.height


def parse_size(text: str) -> Size | None:
    """`"1536x1024"` → Size(1536, 1024); None when the text is not of the form WxH."""
    match = _SIZE.match(text)
    if match is None:
        return None
    return Size(int(match.group(1)), int(match.group(2)))


@functools.lru_cache(maxsize=256)
def parse_ratio(text: str) -> Fraction | None:
    """`"16:9"` → Fraction(16, 9); None when the text is not of the form W:H. Cached: routing
    asks about the same dozen ratios for every request."""
    match = _RATIO.match(text)
    if match is None or int(match.group(2)) == 0 or int(match.group(1)) == 0:
        return None
    return Fraction(int(match.group(1)), int(match.group(2)))


@functools.lru_cache(maxsize=256)
def ratio_value(text: str) -> float:
    ratio = parse_ratio(text)
    if ratio is None:
        raise ValueError(f"not an aspect ratio: {text!r}")
    return float(ratio)


def nearest_ratio(aspect: float, choices: tuple[str, ...]) -> str:
    """The supported ratio closest to `aspect`, on a log scale (2:1 and 1:2 are equally far)."""
    return min(choices, key=lambda choice: abs(math.log(ratio_value(choice) / aspect)))


def tier_for(size: Size, tiers: tuple[str, ...]) -> str:
    """The smallest tier whose images are about as large as `size` (by area), else the largest.

    By area, because a tier's long edge varies with the aspect: Gemini's 1K is 1024×1024 at 1:1
    but 1344×768 at 16:9; so 1536×1024 (1.6 MP) maps to 1K (~1 MP) rather than 2K (~4 MP).
    """
    area = size.width * size.height
    ordered = _by_edge(tiers)
    for tier in ordered:
        if area <= (TIER_EDGE[tier] * 1.35) ** 2:
            return tier
    return ordered[-1]


@functools.lru_cache(maxsize=64)
def _by_edge(tiers: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(tiers, key=TIER_EDGE.__getitem__))


def aspect_matches(actual: Size, wanted_aspect: float, tolerance: float = 0.03) -> bool:
    return abs(actual.aspect / wanted_aspect - 1.0) <= tolerance


def size_for_tier(
    aspect_ratio: str | None,
    tier: str | None,
    *,
    multiple: int = 16,
    max_edge: int | None = None,
    max_pixels: int | None = None,
    max_short_edge: int | None = None,
) -> Size:
    """A pixel size of about the tier's area at the aspect ratio, sides a multiple of `multiple`.

    For providers that take pixel sizes but were asked for an aspect ratio and tier (a google-genai
    client served by OpenAI or the simulator). Shrunk to fit the limits given.
    """
    edge = TIER_EDGE.get(tier or "1K", 1024)
    aspect = ratio_value(aspect_ratio) if aspect_ratio is not None else 1.0
    width, height = edge * math.sqrt(aspect), edge / math.sqrt(aspect)
    if max_edge is not None and max(width, height) > max_edge:
        scale = max_edge / max(width, height)
        width, height = width * scale, height * scale
    if max_short_edge is not None and min(width, height) > max_short_edge:
        scale = max_short_edge / min(width, height)
        width, height = width * scale, height * scale
    if max_pixels is not None and width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        width, height = width * scale, height * scale
        # rounding to the multiple must not pass the budget either
        width, height = width - multiple / 2, height - multiple / 2
    return Size(_to_multiple(width, multiple, max_edge), _to_multiple(height, multiple, max_edge))


def _to_multiple(length: float, multiple: int, limit: int | None) -> int:
    """The nearest multiple (keeps the aspect closest), rounded down where that would pass limit."""
    nearest = max(multiple, round(length / multiple) * multiple)
    if limit is not None and nearest > limit:
        return int(limit // multiple) * multiple
    return nearest
