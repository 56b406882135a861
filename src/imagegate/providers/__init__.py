"""Providers: one module per upstream API behind the interface in base.py."""
