"""Which candidates can serve a request, judged on their declared capabilities."""

from __future__ import annotations

import math
from dataclasses import dataclass

from imagegate.core.deployment import Capabilities
from imagegate.core.geometry import TIER_EDGE, Size, ratio_value, tier_for
from imagegate.core.request import Background, ImageRequest, Quality

# How far a requested aspect may be from a deployment's nearest supported ratio (log distance).
ASPECT_SLACK = 0.10


@dataclass(frozen=True, slots=True)
class Gap:
    """A field of the request a deployment cannot honour."""

    param: str
    reason: str


def find_gap(caps: Capabilities, request: ImageRequest) -> Gap | None:
    """The first field `caps` cannot honour, or None when the deployment can serve the request.

    Output format is not a gap: the gateway transcodes. n is not a gap: the router fans out.
    """
    if request.size is not None and (gap := _size_gap(caps, request.size)) is not None:
        return gap
    ratios, resolutions = caps.aspect_ratios, caps.resolutions
    if (
        request.aspect_ratio is not None
        and ratios is not None
        and request.aspect_ratio not in ratios
    ):
        return Gap("aspect_ratio", f"aspect ratios {', '.join(ratios)}")
    tier = request.resolution
    if tier is not None and resolutions is not None and tier not in resolutions:
        return Gap("resolution", f"resolutions {', '.join(resolutions)}")
    if request.background is Background.TRANSPARENT and not caps.transparent_background:
        return Gap("background", "opaque backgrounds only")
    if len(request.input_images) > caps.max_input_images:
        return Gap("image", f"at most {caps.max_input_images} input images")
    if request.mask is not None and not caps.mask:
        return Gap("mask", "no mask")
    if request.seed is not None and not caps.seed:
        return Gap("seed", "no seed")
    if request.quality is not Quality.AUTO and str(request.quality) not in caps.qualities:
        return Gap("quality", f"qualities {', '.join(caps.qualities)}")
    return None


def _size_gap(caps: Capabilities, size: Size) -> Gap | None:
    size_text = str(size)
    if caps.sizes is not None and not caps.arbitrary_sizes and size_text not in caps.sizes:
        return Gap("size", f"sizes {', '.join(caps.sizes)}")
    if caps.arbitrary_sizes and (gap := _arbitrary_size_gap(caps, size)) is not None:
        return gap
    if caps.sizes is None and not caps.arbitrary_sizes and caps.aspect_ratios:
        aspect = size.aspect
        if not any(
            abs(math.log(ratio_value(r) / aspect)) <= ASPECT_SLACK for r in caps.aspect_ratios
        ):
            return Gap("size", f"aspect ratios {', '.join(caps.aspect_ratios)}")
        if (gap := _tier_gap(caps, size)) is not None:
            return gap
    return None


def _tier_gap(caps: Capabilities, size: Size) -> Gap | None:
    """A size beyond the largest tier of a model that frames by ratio and tier: 3840x2160
    asks for 4K, which a 1K-only model would serve at a quarter of the pixels."""
    if not caps.resolutions:
        return None
    largest = max(caps.resolutions, key=TIER_EDGE.__getitem__)
    wanted = tier_for(size, tuple(TIER_EDGE))
    if TIER_EDGE[wanted] > TIER_EDGE[largest]:
        return Gap("size", f"images up to its {largest} tier ({', '.join(caps.resolutions)})")
    return None


def _arbitrary_size_gap(caps: Capabilities, size: Size) -> Gap | None:
    if size.width % caps.size_multiple or size.height % caps.size_multiple:
        return Gap("size", f"sizes whose sides are multiples of {caps.size_multiple}")
    if caps.max_aspect is not None and max(size.aspect, 1 / size.aspect) > caps.max_aspect + 1e-9:
        return Gap("size", f"aspect ratios up to {caps.max_aspect:g}:1")
    if caps.max_edge is not None and max(size.width, size.height) > caps.max_edge:
        return Gap("size", f"sides up to {caps.max_edge} pixels")
    if caps.max_short_edge is not None and min(size.width, size.height) > caps.max_short_edge:
        return Gap("size", f"sizes whose shorter side is at most {caps.max_short_edge} pixels")
    if caps.max_pixels is not None and size.width * size.height > caps.max_pixels:
        return Gap("size", f"sizes up to {caps.max_pixels:,} pixels in all")
    return None
