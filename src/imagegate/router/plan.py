"""Which candidates can serve a request, judged on their declared capabilities."""

from __future__ import annotations

import math
from dataclasses import dataclass

from imagegate.core.deployment import Capabilities
from imagegate.core.geometry import ratio_value
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
    if request.size is not None:
        size_text = str(request.size)
        if caps.sizes is not None and not caps.arbitrary_sizes and size_text not in caps.sizes:
            return Gap("size", f"sizes {', '.join(caps.sizes)}")
        if caps.arbitrary_sizes and (gap := _arbitrary_size_gap(caps, request)) is not None:
            return gap
        if caps.sizes is None and not caps.arbitrary_sizes and caps.aspect_ratios:
            aspect = request.size.aspect
            if not any(
                abs(math.log(ratio_value(r) / aspect)) <= ASPECT_SLACK for r in caps.aspect_ratios
            ):
                return Gap("size", f"aspect ratios {', '.join(caps.aspect_ratios)}")
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


def _arbitrary_size_gap(caps: Capabilities, request: ImageRequest) -> Gap | None:
    size = request.size
    assert size is not None
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
