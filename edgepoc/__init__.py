"""edgepoc: proof of contribution for collaborative edge computing."""

__version__ = "0.1.0"
