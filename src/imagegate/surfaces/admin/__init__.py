"""The operator's view: deployment health and key pacing."""
