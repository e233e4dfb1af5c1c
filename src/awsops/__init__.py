"""awsops: production-grade AWS operations as a library and a CLI."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
