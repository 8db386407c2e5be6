"""Tritium: optimize models, validate them against an accuracy budget, serve them on Triton."""

__version__ = "0.1.0"
