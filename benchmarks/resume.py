"""A benchmark run's resumable state: the trainable weights (safetensors), the optimizer's tensors (safetensors) and
its settings, the scheduler's position and the step reached (JSON). Written to a temporary sibling folder and moved
into place, so an interrupted save leaves the previous state intact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

WEIGHTS, OPTIMIZER, STATE = "trainable.safetensors", "optimizer.safetensors", "state.json"


def save_run_state(folder: str | os.PathLike, step: int, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Write the state after `step` optimizer steps to `folder` (replacing what was there)."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
              str(tmp / WEIGHTS))
    optimizer_state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in optimizer_state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    save_file(tensors, str(tmp / OPTIMIZER))
    (tmp / STATE).write_text(json.dumps({"step": step, "param_groups": optimizer_state["param_groups"],
                                         "optimizer_scalars": scalars, "scheduler": scheduler.state_dict()}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def saved_step(folder: str | os.PathLike) -> int:
    """The step of the state saved in `folder` (0 when there is none)."""
    path = Path(folder) / STATE
    return json.loads(path.read_text())["step"] if path.is_file() else 0


def load_run_state(folder: str | os.PathLike, model: Any, optimizer: Any, scheduler: Any) -> int:
    """Restore the state saved in `folder` into `model`, `optimizer` and `scheduler`; the step it was saved at, or 0
    when there is none."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not saved_step(folder):
        return 0
    weights = load_file(str(folder / WEIGHTS))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != set(trainable):
        raise ValueError(f"{folder / WEIGHTS}: holds {len(weights)} tensors, the model trains {len(trainable)} "
                         "others; the run's settings changed since it was saved (delete the folder to start again).")
    for name, value in weights.items():
        trainable[name].data.copy_(value)
    state = json.loads((folder / STATE).read_text())
    entries: dict[int, dict[str, Any]] = {}
    for key, value in [*load_file(str(folder / OPTIMIZER)).items(), *state["optimizer_scalars"].items()]:
        index, name = key.split(".", 1)
        entries.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    return state["step"]
