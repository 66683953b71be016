"""DeepScope's PyTorch engine. It never imports the web app: ``train`` is the one entry point."""

from engine.config import RunConfig, parse_config
from engine.train import TERMINAL, train

__all__ = ["TERMINAL", "RunConfig", "parse_config", "train"]
