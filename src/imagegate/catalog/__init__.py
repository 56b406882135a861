"""The model catalog: every known image model, what it can do, what it costs, when it retires."""

from imagegate.catalog.catalog import Catalog, CatalogEntry, Retirement

__all__ = ["Catalog", "CatalogEntry", "Retirement"]
