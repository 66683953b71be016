"""Where a run trains: ``train.device`` auto, cpu or cuda."""

from __future__ import annotations

import torch


def cuda_available() -> bool:
    return torch.cuda.is_available()


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and cuda_available()):
        if not cuda_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")
