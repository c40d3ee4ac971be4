"""Shared pieces of the efficiency and accuracy benchmarks: the compared methods, parameter budgets, the machine
description and the marked sections of ``docs/benchmarks.md``.

The four methods, built on the same `ReferringSegmentationModel`:

* ``s4eca``: `get_peft_model(base, S4ECAConfig(...))`, adapters + the segmentation head trained;
* ``full``: full fine-tuning, every parameter of both encoders and the head trained;
* ``lora``: peft's LoRA on the query/key/value projections of both encoders' self-attention (Swin's
  `SwinAttention.{q,k,v}_proj` in transformers 5, BERT's `BertSelfAttention.{query,key,value}`), rank chosen for the
  same adapter budget as S4ECA, plus the same head through ``modules_to_save=["segmentation_head"]``;
* ``head``: the head alone on the frozen encoders.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

REPO = Path(__file__).resolve().parents[1]
DOCS_PAGE = REPO / "docs" / "benchmarks.md"
IMAGES_DIR = REPO / "docs" / "images"

HEAD_NAME = "segmentation_head"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "query", "key", "value"]
"""Names of the self-attention query/key/value projections: Swin's (``q_proj``, ``k_proj``, ``v_proj`` in
transformers 5; ``query``, ``key``, ``value`` before) and BERT's (``query``, ``key``, ``value``). The output
projections are left out."""

METHODS = ["s4eca", "full", "lora", "head"]
SENTENCE_DROPOUT_RATES = (0.1, 0.25)
"""Sentence dropout rates the learning curves try with the category map (`s4eca_category_map_sentence_dropout_<rate>`)."""
METHOD_LABELS = {
    "s4eca": "S4ECA (default config)",
    "s4eca_gc": "S4ECA + gradient checkpointing",
    "full": "full fine-tuning",
    "lora": "LoRA (q,k,v of both encoders) + head",
    "head": "head only (frozen encoders)",
    "s4eca_no_scale": "S4ECA, no scale selection",
    "s4eca_no_spatial": "S4ECA, no spatial selection",
    "s4eca_no_queries": "S4ECA, no text queries (sentence proxy)",
    "s4eca_no_feedback": "S4ECA, no text feedback (proxies only)",
    "s4eca_proxy_attention": "S4ECA + pixel-to-proxy attention (r=77, same budget)",
    "s4eca_place_kernel": "S4ECA + the head's sentence x place kernel",
    "head_place_kernel": "head only + the head's sentence x place kernel",
    "lora_lr_5e-4": "LoRA (q,k,v of both encoders) + head, learning rate 5e-4",
    "lora_lr_2e-4": "LoRA (q,k,v of both encoders) + head, learning rate 2e-4",
    "lora_place_kernel": "LoRA (q,k,v of both encoders, learning rate 5e-4) + the head's sentence x place kernel",
    "s4eca_sentence_dropout": "S4ECA + the head's place kernel + sentence dropout 0.5 in the head",
    "s4eca_rank_kernel": "S4ECA + the head's place and rank kernels",
    "lora_rank_kernel": "LoRA (q,k,v of both encoders, learning rate 5e-4) + the head's place and rank kernels",
    "s4eca_rank_kernel_lr_4e-3": "S4ECA + the head's place and rank kernels, learning rate 4e-3",
    "s4eca_rank_kernel_lr_1e-3": "S4ECA + the head's place and rank kernels, learning rate 1e-3",
    "s4eca_rank_kernel_sentence_dropout_0.25": "S4ECA + the head's place and rank kernels + sentence dropout 0.25",
    "s4eca_category_map": "S4ECA + the head's place and rank kernels, ranks counted in a category map, learning rate "
                          "1e-3",
    "lora_category_map": "LoRA (q,k,v of both encoders, learning rate 5e-4) + the head's place and rank kernels, "
                         "ranks counted in a category map",
    "head_only_category_map": "head only + the head's place and rank kernels, ranks counted in a category map",
    "s4eca_rank_words": "S4ECA + the head's place and rank kernels, ranks counted in a category map, the rank kernel "
                        "reading the words through attention pools, learning rate 1e-3",
    **{f"s4eca_category_map_sentence_dropout_{rate}": "S4ECA + the head's place and rank kernels, ranks counted in a "
       f"category map, sentence dropout {rate} in the head, learning rate 1e-3" for rate in SENTENCE_DROPOUT_RATES},
    "s4eca_rank_product": "S4ECA + the head's place and rank kernels, ranks counted in a category map, the rank "
                          "kernel's weights with side x count products, sentence dropout 0.1 in the head, learning "
                          "rate 1e-3",
    "lora_rank_product": "LoRA (q,k,v of both encoders, learning rate 5e-4) + the head's place and rank kernels, ranks "
                         "counted in a category map, the rank kernel's weights with side x count products",
    "s4eca_rank_product_no_dropout": "S4ECA + the head's place and rank kernels, ranks counted in a category map, the "
                                     "rank kernel's weights with side x count products, no sentence dropout, learning "
                                     "rate 1e-3",
}

PAGE_HEADER = """# Benchmarks

S4ECA against full fine-tuning, LoRA at a similar parameter budget and a head-only baseline: what training costs
(parameters, adapter file, memory, step time, latency) and what it reaches on the synthetic scenes under one
training protocol. The sections below are written by the scripts in `benchmarks/`; each states the command and the
machine that produced it.
"""


# ---------------------------------------------------------------------------------------------- commands


def command_line(name: str, *words: str) -> str:
    """How a user runs benchmark `name` with `words`: ``python -m benchmarks.<name> ...``, as the docs show it."""
    return shlex.join(["python", "-m", f"benchmarks.{name}", *words])


def module_process(name: str) -> tuple[list[str], dict[str, str]]:
    """``(argv prefix, environment)`` to run benchmark `name` in a process of its own, from any working folder."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return [sys.executable, "-m", f"benchmarks.{name}"], {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


# ---------------------------------------------------------------------------------------------- backbones


def window_for(image_size: int) -> int:
    """Swin's window: 12 as in Swin-B at 384/480 px, smaller where the last stage's map (``image_size / 32``) is."""
    return max(1, min(12, image_size // 32))


def backbone_configs(image_size: int, tiny: bool, window_size: int | None = None, **text_overrides: Any):
    """`(SwinConfig, BertConfig)`: the paper's Swin-B (embed_dim 128, depths [2, 2, 18, 2], heads [4, 8, 16, 32])
    + BERT-base, or tiny ones (``tiny``), built offline from configs. The one place the benchmarks take them from;
    ``window_size`` defaults to `window_for`; `text_overrides` set BERT fields."""
    from transformers import BertConfig, SwinConfig

    window = window_for(image_size) if window_size is None else window_size
    if tiny:
        vision = SwinConfig(image_size=image_size, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                            num_heads=[1, 1, 1, 1], window_size=window)
        text = BertConfig(**{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "intermediate_size": 64, "vocab_size": 120, **text_overrides})
    else:
        vision = SwinConfig(image_size=image_size, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                            window_size=window)
        text = BertConfig(**text_overrides)
    return vision, text


# ---------------------------------------------------------------------------------------------- parameters


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of `model` (only those with ``requires_grad`` when `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def head_parameters(model: nn.Module) -> int:
    """Parameters of the segmentation head (a `modules_to_save` copy under peft counts once: the trained one)."""
    return sum(p.numel() for n, p in model.named_parameters() if HEAD_NAME in n and p.requires_grad)


def lora_target_modules(base: nn.Module, targets: list[str] = LORA_TARGETS) -> dict[str, nn.Module]:
    """The `nn.Linear` modules of `base` named by `targets`; both encoders must have some."""
    from torch import nn

    found = {
        name: module for name, module in base.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets
    }
    for encoder in ("vision_model", "text_model"):
        if not any(name.startswith(encoder + ".") for name in found):
            raise ValueError(f"No attention projection named {targets} in `{encoder}`; LoRA would skip that encoder.")
    return found


def lora_parameters_per_rank(base: nn.Module, targets: list[str] = LORA_TARGETS) -> int:
    """LoRA parameters at rank 1 on the target projections (``r * (in + out)`` each)."""
    return sum(m.in_features + m.out_features for m in lora_target_modules(base, targets).values())


def lora_rank_for_budget(base: nn.Module, budget: int, targets: list[str] = LORA_TARGETS) -> int:
    """The LoRA rank whose parameter count on `targets` is closest to `budget`."""
    return max(1, round(budget / lora_parameters_per_rank(base, targets)))


def s4eca_adapter_budget(base: nn.Module, s4eca_kwargs: dict[str, Any] | None = None) -> int:
    """Trainable S4ECA adapter parameters (head excluded) for `base`, counted on a copy of it."""
    import copy

    from peft import get_peft_model

    from s4eca_peft import S4ECAConfig

    probe = get_peft_model(copy.deepcopy(base), S4ECAConfig(**(s4eca_kwargs or {})))
    budget = count_parameters(probe, trainable_only=True) - head_parameters(probe)
    del probe
    return budget


# ---------------------------------------------------------------------------------------------- methods


def build_method(
    base: nn.Module, method: str, lora_rank: int | None = None, s4eca_kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """The model trained by `method` on top of `base` (modified in place: pass a fresh or copied base)."""
    if method == "full":
        base.requires_grad_(True)
        return base
    if method == "head":
        base.freeze_backbones()
        getattr(base, HEAD_NAME).requires_grad_(True)
        return base
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        if lora_rank is None:
            raise ValueError("method 'lora' needs `lora_rank` (see `lora_rank_for_budget`).")
        config = LoraConfig(
            r=lora_rank, lora_alpha=lora_rank, lora_dropout=0.0, target_modules=sorted(lora_target_modules(base)),
            modules_to_save=[HEAD_NAME],
        )
        return get_peft_model(base, config)
    if method.startswith("s4eca"):
        from peft import get_peft_model

        from s4eca_peft import S4ECAConfig

        return get_peft_model(base, S4ECAConfig(**(s4eca_kwargs or {})))
    raise ValueError(f"Unknown method {method!r}; expected one of {METHODS} or an S4ECA ablation.")


def saved_size_bytes(model: nn.Module, method: str, directory: str | os.PathLike) -> int:
    """Bytes of what a user keeps after training: `save_pretrained` of the PEFT model (adapters and head), of the
    whole model for full fine-tuning, and the head's weights (safetensors) for the head-only baseline."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if method == "head":
        from safetensors.torch import save_file

        head = getattr(model, HEAD_NAME)
        save_file({f"{HEAD_NAME}.{k}": v.contiguous() for k, v in head.state_dict().items()},
                  str(directory / "head.safetensors"))
    else:
        model.save_pretrained(str(directory))
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


# ---------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info(threads: int, device: str = "cpu") -> dict[str, Any]:
    """CPU model, usable cores, the torch threads of the measured processes, package versions (read from the
    installed metadata, so that the driver process does not import them), and for a CUDA `device` the GPU: its name,
    memory and CUDA version. The one description of the machine every benchmark records with its results."""
    from importlib.metadata import version

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": cpu_model(),
        "cores": usable,
        "torch_threads": threads,
        "torch": version("torch"),
        "transformers": version("transformers"),
        "peft": version("peft"),
        "python": platform.python_version(),
    }
    if device.startswith("cuda"):
        import torch

        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30),
                    torch=torch.__version__)
    return info


def machine_line(info: dict[str, Any] | str) -> str:
    """`machine_info` in one line (a line stored as text is shown as it is)."""
    if isinstance(info, str):
        return info
    if "gpu" in info:
        return (f"{info['gpu']} ({info['gpu_memory_gib']} GiB), torch {info['torch']} (CUDA {info['cuda']}), "
                f"transformers {info['transformers']}, peft {info['peft']}")
    return (
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} thread(s) per "
        f"measured process), "
        f"transformers {info['transformers']}, peft {info['peft']}, Python {info['python']}"
    )


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# ---------------------------------------------------------------------------------------------- docs page


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- benchmark:{name}:start -->", f"<!-- benchmark:{name}:end -->"


def write_section(path: str | os.PathLike, name: str, content: str) -> None:
    """Replace the section between ``<!-- benchmark:<name>:start/end -->`` in `path` (appended when missing; the
    page is created with a header when it does not exist). Other sections are left as they are."""
    path = Path(path)
    text = path.read_text() if path.exists() else PAGE_HEADER
    start, end = _markers(name)
    block = f"{start}\n{content.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_section(path: str | os.PathLike, name: str) -> str | None:
    path = Path(path)
    if not path.exists():
        return None
    start, end = _markers(name)
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), path.read_text(), re.S)
    return match.group(1) if match else None


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in cells) + " |" for cells in lines)


def format_count(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1e6:.2f} M"
    if value >= 1_000:
        return f"{value / 1e3:.1f} k"
    return str(value)


def format_bytes(value: int) -> str:
    if value >= 1 << 30:
        return f"{value / (1 << 30):.2f} GiB"
    if value >= 1 << 20:
        return f"{value / (1 << 20):.1f} MiB"
    return f"{value / (1 << 10):.1f} KiB"
