"""Operators dispatched by one training forward + backward: S4ECA against full fine-tuning and the frozen-through floor.

On a GPU a PEFT step is launch-bound: its time follows the number of kernels more than the number of FLOPs. On a CPU
the same shape shows as the number of aten operators that torch dispatches, which is deterministic (the same on a
busy machine as on an idle one), unlike step times. This script counts them with `torch.profiler` for one forward and
backward of Swin-B + BERT-base (the configs of `benchmarks.efficiency`, random weights), batch 2, 20 tokens:

* ``full``: full fine-tuning, every encoder weight gets a gradient;
* ``floor``: the frozen encoders with the gradient flowing through them (input embeddings require grad) and the
  head trained: what any method with adapters inside both encoders pays before its adapters cost anything;
* ``s4eca``: the default S4ECA config (eager), and variants: adapters compiled with `torch.compile`
  (`s4eca_peft.tuner.compile_adapters`) and, under bf16 autocast, frozen encoder weights stored in bf16
  (`ReferringSegmentationModel.cast_frozen_parameters`).

Every variant runs one warm-up step (two when compiled), then one profiled step (gradients set to ``None`` before
each, as `optimizer.zero_grad()` does). Counted: every ``aten::`` operator event, nested ones included ("aten ops"),
and "compute ops": the innermost ones that do arithmetic or copy data, i.e. without views, metadata and allocations
(closest to what launches a kernel on a GPU); a compiled region's generated kernels are not aten operators, so each
call of a compiled graph counts as one compute op. The optimizer step is left out.

    python -m benchmarks.operator_count                # Swin-B + BERT-base at 224 px, every variant
    python -m benchmarks.operator_count --no-compile   # without the compiled variants (compiling takes minutes)
    python -m benchmarks.operator_count --variants s4eca_compile --merge-json eager.json   # add to an earlier run
    python -m benchmarks.operator_count --render --merge-json eager.json compiled.json   # one table from runs
    python -m benchmarks.operator_count --smoke --docs /tmp/o.md   # tiny models (tests)

The table goes to the ``operator-count`` section of docs/benchmarks.md (``--docs`` writes elsewhere; ``--smoke``
writes nothing unless ``--docs`` is given), the raw counts to ``--json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DOCS_PAGE,
    build_method,
    command_line,
    machine_info,
    machine_line,
    markdown_table,
    window_for,
    write_section,
)
from benchmarks.harness import BATCH_SIZE, TEXT_LENGTH, build_base, make_inputs

SECTION = "operator-count"
AIM = 0.8
"""The aim for S4ECA against full fine-tuning, aten operators per forward + backward (eager fp32 today ~1.25x)."""
NON_COMPUTE_OPS = frozenset(
    "aten::" + name
    for name in (
        "_reshape_alias _unsafe_view alias as_strided as_strided_ chunk detach empty empty_like empty_strided "
        "expand expand_as lift_fresh narrow permute reshape resize_ resolve_conj resolve_neg select slice split "
        "squeeze t transpose unbind unflatten unsqueeze view view_as"
    ).split()
)
"""Operators that only make views, read metadata or allocate: no kernel runs for them on a GPU."""


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    method: str  # "s4eca", "full" or "floor"
    autocast: bool = False  # bf16 autocast
    compile: bool = False  # `compile_adapters`
    cast_frozen: bool = False  # frozen encoder weights stored in bf16


VARIANTS = [
    Variant("full", "full fine-tuning", "full"),
    Variant("floor", "frozen-through floor", "floor"),
    Variant("s4eca", "S4ECA", "s4eca"),
    Variant("s4eca_compile", "S4ECA, adapters compiled", "s4eca", compile=True),
    Variant("full_bf16", "full fine-tuning", "full", autocast=True),
    Variant("floor_bf16", "frozen-through floor", "floor", autocast=True),
    Variant("s4eca_bf16", "S4ECA", "s4eca", autocast=True),
    Variant("s4eca_bf16_cast", "S4ECA, frozen encoders in bf16", "s4eca", autocast=True, cast_frozen=True),
    Variant("s4eca_bf16_cast_compile", "S4ECA, frozen encoders in bf16, adapters compiled", "s4eca", autocast=True,
            cast_frozen=True, compile=True),
]


def count_operators(events: list) -> dict[str, int]:
    """Aten operators (nested included), compute operators (no views/allocations, none computing inside them) and
    calls of compiled graphs."""
    aten = [e for e in events if e.name.startswith("aten::")]
    computes: dict[int, bool] = {}

    def has_compute_inside(event) -> bool:
        return any(is_compute(child) or has_compute_inside(child) for child in event.cpu_children)

    def is_compute(event) -> bool:
        if id(event) not in computes:
            computes[id(event)] = (event.name.startswith("aten::") and event.name not in NON_COMPUTE_OPS
                                   and not has_compute_inside(event))
        return computes[id(event)]

    compiled_calls = sum(1 for e in events if e.name.startswith("## Call CompiledFxGraph"))
    compute = sum(1 for e in aten if is_compute(e))
    return {"aten_ops": len(aten) + compiled_calls, "compute_ops": compute + compiled_calls,
            "compiled_calls": compiled_calls}


def build_variant(variant: Variant, image_size: int, tiny: bool):
    """The model of `variant` on a fresh base, in training mode (encoders in eval mode), and its base."""
    from s4eca_peft.modeling import COMPUTE_DTYPES
    from s4eca_peft.training import set_training_mode
    from s4eca_peft.tuner import compile_adapters

    base = build_base(image_size, tiny)
    model = build_method(base, "head" if variant.method == "floor" else variant.method)
    if variant.method == "floor":
        base.enable_input_require_grads()  # the gradient flows back through both frozen encoders
    if variant.cast_frozen:
        base.cast_frozen_parameters(COMPUTE_DTYPES["bf16"])
    if variant.compile:
        compile_adapters(model)
    set_training_mode(model)
    return model, base


def measure(variant: Variant, image_size: int, tiny: bool) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    model, base = build_variant(variant, image_size, tiny)
    inputs = make_inputs(BATCH_SIZE, image_size, base.config.text_config.vocab_size)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.autocast)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**inputs).loss
        loss.backward()

    started = time.perf_counter()
    for _ in range(2 if variant.compile else 1):
        step()
    warmup_s = time.perf_counter() - started
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    counts = count_operators(list(prof.events()))
    adapted_blocks = sum(1 for name, _ in model.named_modules() if name.endswith("s4eca_vision_adapter"))
    return {**asdict(variant), **counts, "vision_adapters": adapted_blocks, "warmup_s": warmup_s}


def ratio(value: float, reference: dict[str, Any] | None, key: str) -> str:
    return f"{value / reference[key]:.2f}x" if reference else "n/a"


def results_table(results: list[dict[str, Any]]) -> str:
    header = ["precision", "variant", "aten ops", "vs full", "vs floor", "compute ops", "vs full", "vs floor",
              "aten ops per vision adapter"]
    rows = []
    for autocast in (False, True):
        group = [r for r in results if r["autocast"] == autocast]
        full = next((r for r in group if r["method"] == "full"), None)
        floor = next((r for r in group if r["method"] == "floor"), None)
        for r in group:
            per_adapter = (
                f"{(r['aten_ops'] - floor['aten_ops']) / r['vision_adapters']:.0f}"
                if r["vision_adapters"] and floor else ""
            )
            rows.append([
                "bf16 autocast" if autocast else "fp32", r["label"], f"{r['aten_ops']:,}",
                ratio(r["aten_ops"], full, "aten_ops"), ratio(r["aten_ops"], floor, "aten_ops"),
                f"{r['compute_ops']:,}", ratio(r["compute_ops"], full, "compute_ops"),
                ratio(r["compute_ops"], floor, "compute_ops"), per_adapter,
            ])
    return markdown_table(header, rows)


def aim_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for autocast in (False, True):
        group = {r["key"]: r for r in results if r["autocast"] == autocast}
        full = next((r for r in group.values() if r["method"] == "full"), None)
        for r in group.values():
            if r["method"] != "s4eca" or full is None:
                continue
            value = r["aten_ops"] / full["aten_ops"]
            lines.append(f"- {'bf16 autocast' if autocast else 'fp32'}, {r['label']}: {value:.2f}x the aten operators "
                         f"of full fine-tuning (aim <= {AIM}x: {'holds' if value <= AIM else 'does not hold'}).")
    return lines


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    variants = [v for v in VARIANTS if (args.compile or not v.compile) and (not args.variants or v.key in args.variants)
                and not args.render]
    image_size = args.image_size or (64 if args.smoke else 224)
    command = command_line("operator_count", *(["--smoke"] if args.smoke else []),
                           *([] if args.compile else ["--no-compile"]),
                           *(["--variants", *args.variants] if args.variants else []))
    earlier = [json.loads(Path(path).read_text()) for path in args.merge_json or []]
    for run_ in earlier:
        if run_["image_size"] != image_size:
            raise ValueError(f"{args.merge_json}: counted at {run_['image_size']} px, this run at {image_size} px.")
    commands = [command_ for run_ in earlier for command_ in run_["commands"]] + ([] if args.render else [command])
    started = time.time()
    results = []
    for variant in variants:
        result = measure(variant, image_size, args.smoke)
        gc.collect()  # the variant's model goes before the next one is built
        if variant.compile:
            torch._dynamo.reset()
        results.append(result)
        print(f"{variant.key}: {result['aten_ops']} aten ops, {result['compute_ops']} compute ops "
              f"(warm-up {result['warmup_s']:.0f} s)", flush=True)
    wall = time.time() - started + sum(run_["wall_s"] for run_ in earlier)
    measured = {r["key"] for r in results}
    results = [r for run_ in earlier for r in run_["results"] if r["key"] not in measured] + results
    order = [v.key for v in VARIANTS]
    results.sort(key=lambda r: order.index(r["key"]))
    model_line = ("tiny Swin + BERT (smoke)" if args.smoke else
                  "Swin-B (embed_dim 128, depths [2, 2, 18, 2]) + BERT-base from configs (random weights)")
    table = results_table(results)
    # the machine recorded with the first run counted: a rendering from stored runs describes theirs
    machine = next((run_["machine"] for run_ in earlier if "machine" in run_), None) or machine_info(args.threads)
    section = "\n".join([
        "## Operators per training step (CPU)",
        "",
        f"Command{'s' if len(commands) > 1 else ''}: {', '.join(f'`{c}`' for c in commands)} ({wall / 60:.1f} "
        f"min). Machine: {machine_line(machine)}. Operator counts do not depend on the machine's "
        "load: unlike times, they are the same on a shared machine."
        + (f" Raw counts in {', '.join(f'`{path}`' for path in args.merge_json)}, one table from them with "
           "`--render --merge-json`." if args.merge_json else ""),
        "",
        f"{model_line}, {image_size}x{image_size} (window {window_for(image_size)}), batch {BATCH_SIZE}, "
        f"{TEXT_LENGTH} tokens; one forward + backward after warm-up, optimizer step excluded. \"aten ops\": every "
        "aten operator dispatched, nested ones included; \"compute ops\": the innermost ones that compute or copy "
        "(no views, metadata or allocations; one per call of a compiled graph), the closest CPU count to GPU kernel "
        "launches. The floor: the frozen encoders with the gradient flowing through them and the head trained. "
        "\"per vision adapter\": the operators above the floor, divided by the number of vision adapters (the text "
        "adapter's share included). bf16 rows run under `torch.autocast(\"cpu\", dtype=torch.bfloat16)`, as "
        "`--mixed_precision bf16` trains; there full fine-tuning and the floor keep float32 weights (trained "
        "weights need them; the floor's frozen ones could be stored in bf16 too), so the margin of a row with frozen "
        "encoders in bf16 over the floor includes the weight casts it no longer makes.",
        "",
        table,
        "",
        "Aim: S4ECA <= 0.8x the aten operators of full fine-tuning.",
        "",
        *aim_lines(results),
    ])
    print(table)
    print("\n".join(aim_lines(results)))
    docs = args.docs if args.docs else (None if args.smoke else str(DOCS_PAGE))
    if docs:
        write_section(docs, SECTION, section)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"image_size": image_size, "wall_s": wall, "commands": commands, "machine": machine, "results": results},
            indent=2))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="Tiny models (for tests); writes no docs by default.")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="Leave out the variants with compiled adapters (compiling takes minutes on a CPU).")
    parser.add_argument("--variants", nargs="+", default=None, choices=[v.key for v in VARIANTS],
                        help="Count only these variants (default: all).")
    parser.add_argument("--merge-json", nargs="+", default=None,
                        help="Raw counts of earlier runs (their --json) to put in the same table; variants counted "
                             "now replace theirs.")
    parser.add_argument("--render", action="store_true",
                        help="Count nothing: write the table of the --merge-json runs (at their image size).")
    parser.add_argument("--image-size", type=int, default=None, help="Square input side (default 224; smoke 64).")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (counts do not depend on it).")
    parser.add_argument("--docs", default=None, help=f"Markdown page to write the section to (default {DOCS_PAGE}).")
    parser.add_argument("--json", default=None, help="Also write the raw counts to this JSON file.")
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
