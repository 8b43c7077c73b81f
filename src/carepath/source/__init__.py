"""Source layer: bytes on disk to plain Python data plus a key-path → line:col map."""

from carepath.source.loader import LoadedSource, Position, load_source

__all__ = ["LoadedSource", "Position", "load_source"]
