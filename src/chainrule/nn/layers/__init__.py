"""Layers, one file per concept."""
