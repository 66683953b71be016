"""DeepScope: see why very deep networks train or fail to train.

One installed package. Its parts live in the repository's top-level folders and are mapped in here
by ``pyproject.toml`` (docs/architecture.md):

- ``deepscope.engine``: PyTorch and nothing of the web; ``from deepscope.engine import train``.
- ``deepscope.app``: the FastAPI service, its store, hub and executors.
- ``deepscope.templates`` and ``deepscope.static``: the playground page, no build step.
- ``deepscope.client``: a Python client of a server; ``deepscope.watch(model, optimizer)`` streams any
  PyTorch training into the playground (``deepscope.watching``).
"""

from typing import Any

__version__ = "0.2.0"


def watch(model: Any, optimizer: Any, name: str | None = None, **options: Any) -> Any:
    """Watch ``model`` as ``optimizer`` trains it; see ``deepscope.watching`` and docs/watch.md."""
    from deepscope.watching import watch as _watch

    return _watch(model, optimizer, name, **options)
