"""What a provider without a quality setting tells the client about `quality`.

Gemini and Imagen have no quality knob: `high` asks for the 2K tier where the model has one,
and `low`/`medium` change nothing. The request is served, and the client is told so in
`x-imagegate-notes` rather than left to guess.
"""

from __future__ import annotations

from imagegate.core.request import ImageRequest, Quality


def unmatched_quality_note(request: ImageRequest) -> str | None:
    if request.quality in (Quality.LOW, Quality.MEDIUM):
        return f"quality {request.quality} has no equivalent on this model: its default was used"
    return None
