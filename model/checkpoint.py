"""The shipped checkpoint: MeshTalk and its context model in one file, loaded without running code.

Contents (torch.save of plain values; torch.load(weights_only=True) reads it):
  format: int, model_config: JSON str, info: JSON str,
  meshtalk: state_dict, context: state_dict (float tensors stored as float16 to halve the size).
"""

import json
from pathlib import Path

import torch

from .config import ModelConfig
from .context import ContextModel
from .networks import MeshTalk

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "meshtalk.pt"
FORMAT = 1


def _half(state: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def save_checkpoint(path: Path, config: ModelConfig, meshtalk: MeshTalk, context: ContextModel, info: dict) -> None:
    torch.save({
        "format": FORMAT, "model_config": json.dumps(config.to_dict()), "info": json.dumps(info),
        "meshtalk": _half(meshtalk.state_dict()), "context": _half(context.state_dict()),
    }, path)


def trained_weights(stage_checkpoint: dict) -> dict:
    """The weights a training stage's checkpoint (runs/<run>/<stage>.pt) hands on: the moving
    average of its weights, or the weights themselves where it has none (runs before the average)."""
    return stage_checkpoint.get("ema", stage_checkpoint["model"])


def pick_device(name: str, auto_cuda: bool = True) -> torch.device:
    """"auto" picks CUDA when available and `auto_cuda`, else the CPU; asking for CUDA without it
    is an error. Animation passes auto_cuda=False: its sampler is a loop of ~200 tiny operations a
    frame, which the GPU ran slower than the CPU (on an H100 machine, 60 s of speech animated at
    8x real time on CUDA and 35x on its 16 CPU cores; `python -m model.bench --device cuda`).
    That loop now runs in numpy on the CPU for every device; CUDA has not been re-measured since."""
    if name == "auto":
        return torch.device("cuda" if auto_cuda and torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was asked for but is not available; use the CPU device")
    return torch.device(name)


class CheckpointError(RuntimeError):
    """The checkpoint is missing or unreadable; the message says what to do."""


def load_checkpoint(path: Path | str = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu"):
    """(config, MeshTalk, ContextModel, info) in eval mode, float32, on `device`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model weights not found at {path}; reinstall the extension or train them "
                              "with `python -m model.train`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        config = ModelConfig.from_dict(json.loads(state["model_config"]))
        meshtalk, context = MeshTalk(config), ContextModel(config)
        meshtalk.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["meshtalk"].items()})
        context.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["context"].items()})
    except Exception as error:  # any corruption: one clear message
        raise CheckpointError(f"model weights at {path} are unreadable ({error}); reinstall the extension") from error
    return config, meshtalk.to(device).eval(), context.to(device).eval(), json.loads(state["info"])
