"""DeepScope's PyTorch engine. It never imports the web app: ``train`` is the one entry point.

``from deepscope.engine import train``. Names load on first use, so a light module such as
``deepscope.engine.threads`` can be imported before torch is.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "deepscope.engine.loop",
    "RunConfig": "deepscope.engine.config",
    "Status": "deepscope.engine.events",
    "EventType": "deepscope.engine.events",
    "FINISHED": "deepscope.engine.events",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deepscope.engine' has no attribute {name!r}")
