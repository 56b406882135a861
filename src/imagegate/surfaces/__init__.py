"""Surfaces: one package per wire dialect. Nothing outside a surface knows its wire format."""
