"""Generator backends behind one interface, and `load()` to get one by name or file."""

from legato.generators.base import Generator
from legato.generators.registry import load

__all__ = ["Generator", "load"]
