"""The HTTP edge: the only package that imports the web framework."""

from .app import create_app

__all__ = ["create_app"]
