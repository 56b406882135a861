"""Check that an image is the one that was asked for, from its header alone."""

from __future__ import annotations

from imagegate.core.geometry import aspect_matches
from imagegate.core.request import ImageRequest
from imagegate.core.result import GeneratedImage

ASPECT_TOLERANCE = 0.03  # Gemini's 16:9 is 1344×768 (1.75, not 1.78): within 3 %


def geometry_mismatch(
    request: ImageRequest,
    image: GeneratedImage,
    *,
    exact: bool,
    tolerance: float = ASPECT_TOLERANCE,
) -> str | None:
    """What is wrong with the image's geometry, or None when it is what the request asked for.

    `exact`: the deployment promises the exact pixel size; otherwise only the aspect is checked,
    within `tolerance` (a share: Imagen's 16:9 is 1408x768, 3 % wide of 16:9).
    """
    if request.size is not None and exact:
        if image.size != request.size:
            return f"asked for {request.size}, got {image.size}"
        return None
    wanted = request.wanted_aspect
    if wanted is not None and not aspect_matches(image.size, wanted, tolerance):
        asked = request.size or request.aspect_ratio
        got = f"{image.size} (aspect {image.size.aspect:.3f})"
        return f"asked for {asked} (aspect {wanted:.3f}), got {got}"
    return None
