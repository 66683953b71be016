"""DeepScope: see why very deep networks train or fail to train.

One installed package. Its parts live in the repository's top-level folders and are mapped in here
by ``pyproject.toml`` (docs/architecture.md):

- ``deepscope.engine``: PyTorch and nothing of the web; ``from deepscope.engine import train``.
- ``deepscope.app``: the FastAPI service, its store, hub and executors.
- ``deepscope.templates`` and ``deepscope.static``: the playground page, no build step.
"""

__version__ = "0.2.0"
