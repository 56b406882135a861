"""imagegate: one reliable endpoint in front of many image models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
