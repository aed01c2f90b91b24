"""Checkpoints that resume exactly, working around aihwkit 1.1.0's load path.

aihwkit's own ``load_state_dict`` (a) replaces each tile's context parameter, so an optimizer
built before the load silently stops updating the tiles, and (b) sets the visible weights
after the hidden parameters, which zeroes the fast tile A of every transfer compound. It also
pickles rpu_config objects, so its checkpoints need full unpickling.

We store instead, per analog tile, the raw simulator state (visible weights, every hidden
parameter incl. A and the transfer buffer, the compound's counters and choppers via
``dump_extra``) next to the digital state dict. All of it is tensors, numbers and strings,
so a checkpoint loads with ``torch.load(weights_only=True)``. To restore, the model is rebuilt
from the spec and each tile gets weights -> hidden parameters -> extra state, in that order;
the optimizers are built afterwards.

One residual 1.1.0 quirk: setting hidden parameters clips each device's weight to its bounds
without the SoftBoundsReference offset, so a weight parked right at a bound of a device with
a nonzero reference (symmetry-point subtraction, sp_skew, sp_variability) may move by up to
that offset. ``restore_model_state`` measures and reports how many did.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cttv2_engine.files import atomic_write

FORMAT = "cttv2-checkpoint/1"
_ANALOG_STATE_SUFFIX = "analog_tile_state"


def capture_model_state(model: nn.Module) -> dict[str, Any]:
    digital = {
        k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.endswith(_ANALOG_STATE_SUFFIX)
    }
    tiles = {}
    for name, tile in _named_tiles(model):
        sim = tile.tile
        tiles[name] = {
            "weights": sim.get_weights().detach().cpu().clone(),
            "hidden": sim.get_hidden_parameters().detach().cpu().clone(),
            "hidden_names": list(sim.get_hidden_parameter_names()),
            "extra": _plain(sim.dump_extra()),
            "lr": float(sim.get_learning_rate()),
        }
    return {"digital": digital, "tiles": tiles}


def restore_model_state(model: nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """Load a captured state into a freshly built model of the same spec. Returns what moved."""
    missing, unexpected = model.load_state_dict(state["digital"], strict=False)
    missing = [k for k in missing if not k.endswith(_ANALOG_STATE_SUFFIX)]
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    tiles = dict(_named_tiles(model))
    if set(tiles) != set(state["tiles"]):
        raise ValueError("checkpoint has different analog tiles than the model")
    moved, total, max_shift = 0, 0, 0.0
    for name, tile in tiles.items():
        saved = state["tiles"][name]
        sim = tile.tile
        if list(sim.get_hidden_parameter_names()) != saved["hidden_names"]:
            raise ValueError(f"tile {name}: hidden parameter layout differs from the checkpoint")
        saved_on = saved["weights"].device
        sim.set_weights(saved["weights"])
        sim.set_hidden_parameters(saved["hidden"])  # after the weights: keeps A and the buffer
        sim.load_extra(saved["extra"], True)
        sim.set_learning_rate(saved["lr"])
        diff = (sim.get_hidden_parameters().to(saved_on) - saved["hidden"]).abs()
        moved += int((diff > 0).sum())
        total += diff.numel()
        max_shift = max(max_shift, float(diff.max()) if diff.numel() else 0.0)
    return {"moved": moved, "total": total, "max_shift": max_shift}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def copy_atomic(src: Path, dst: Path) -> None:
    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint is plain tensors/numbers/strings (see module doc), so even a
    # tampered file cannot run code here.
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a cttv2 checkpoint")
    return payload


def _named_tiles(model: nn.Module):
    from aihwkit.simulator.tiles.module import TileModule

    for name, module in model.named_modules():
        if isinstance(module, TileModule):
            yield name, module


def _plain(obj: Any) -> Any:
    """dump_extra() output as plain Python (lists of numbers), loadable with weights_only."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj
