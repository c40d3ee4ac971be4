"""Which pretext makes the best frozen features for the referring task: a short S4ECA run on each backbone, scored
on the synthetic **val** split.

Each backbone folder is made by ``s4eca-pretrain-backbone`` (its ``pretraining.json`` records how); ``--steps 0``
gives the random initialisation as a control. Every run is `accuracy_synthetic.train_and_evaluate` with the default
`S4ECAConfig`, the pretrained MiniLM and the same protocol; only the frozen vision backbone differs.
``--head_only NAME`` adds a head-only run (frozen encoders, the same head) on that backbone.

    s4eca-pretrain-backbone --pretext dense --steps 120 --batch_size 16 --output_dir outputs/probe/bb_dense
    s4eca-pretrain-backbone --pretext mim --steps 120 --batch_size 16 --output_dir outputs/probe/bb_mim
    python -m benchmarks.pretext_probe --backbones dense=outputs/probe/bb_dense mim=outputs/probe/bb_mim \\
        --head_only dense --jobs 3

The table goes to the ``pretext-probe`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DOCS_PAGE, load_average, markdown_table, write_section
from benchmarks.synthetic_runs import PROTOCOL, run_all_named

HEAD_ONLY = " + head only"


def probe_table(backbones: dict[str, Path], results: dict[str, dict[str, Any]]) -> str:
    header = ["backbone", "trained", "pretext", "pretraining", "held-out pretext scores", "val mIoU", "val oIoU",
              "val Pr@0.5"]
    rows = []
    for name, result in results.items():
        backbone = name.removesuffix(HEAD_ONLY)
        facts = json.loads((backbones[backbone] / "pretraining.json").read_text())
        scores = ", ".join(f"{k} {v:.3f}" for k, v in facts["metrics"].items()) if facts["steps"] else "-"
        made = (f"{facts['steps']} steps x {facts['batch_size']} scenes, {facts['train_seconds']:.0f} s"
                if facts["steps"] else "none (random init)")
        val = result["val"]
        rows.append([backbone, "head only" if name.endswith(HEAD_ONLY) else "S4ECA + head",
                     facts["pretext"] if facts["steps"] else "-", made, scores, f"{100 * val['mIoU']:.2f}",
                     f"{100 * val['oIoU']:.2f}", f"{100 * val['precision@0.5']:.2f}"])
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", required=True, help="name=folder pairs (SwinModel folders).")
    parser.add_argument("--steps", type=int, default=64, help="S4ECA optimizer steps of batch 16 per backbone.")
    parser.add_argument("--num_val_samples", type=int, default=128, help="Fixed synthetic val scenes.")
    parser.add_argument("--head_only", nargs="*", default=[],
                        help="Backbone names that also get a head-only run (frozen encoders, same protocol).")
    parser.add_argument("--jobs", type=int, default=2, help="Parallel run processes of one torch thread.")
    parser.add_argument("--docs", default=str(DOCS_PAGE), help="Markdown page for the section ('' for none).")
    args = parser.parse_args(argv)
    backbones = {}
    for pair in args.backbones:
        name, _, folder = pair.partition("=")
        if not folder or not (Path(folder) / "pretraining.json").is_file():
            raise SystemExit(f"--backbones {pair!r}: expected name=folder with a pretraining.json (from "
                             "s4eca-pretrain-backbone).")
        backbones[name] = Path(folder)
    protocol = {**PROTOCOL, "image_size": 128, "steps": args.steps, "batch_size": 16,
                "num_eval_samples": args.num_val_samples, "threads": 1, "splits": ("val",)}
    load_before = load_average()
    started = time.time()
    unknown = set(args.head_only) - set(backbones)
    if unknown:
        raise SystemExit(f"--head_only {sorted(unknown)}: not among the --backbones names {sorted(backbones)}.")
    tasks = {name: ("s4eca", {**protocol, "vision_model": str(folder)}) for name, folder in backbones.items()}
    tasks.update({name + HEAD_ONLY: ("head", {**protocol, "vision_model": str(backbones[name])})
                  for name in args.head_only})
    results = run_all_named(tasks, args.jobs)
    wall = time.time() - started
    table = probe_table(backbones, results)
    command = "python -m benchmarks.pretext_probe --backbones " + " ".join(args.backbones)
    if args.head_only:
        command += " --head_only " + " ".join(args.head_only)
    if args.steps != 64:
        command += f" --steps {args.steps}"
    if args.jobs != 2:
        command += f" --jobs {args.jobs}"
    section = "\n".join([
        "## Pretext of the embedded backbone (val probe)",
        "",
        f"Command: `{command}` ({wall / 60:.1f} min, {args.jobs} processes of one torch thread; load average "
        f"{load_before} before, {load_average()} after). Each row: the default S4ECA adapters and the pretrained "
        f"MiniLM on that frozen backbone, {args.steps} steps of batch 16 at 128 px (the `accuracy_synthetic.py` "
        f"protocol), final weights scored on {args.num_val_samples} fixed synthetic **val** scenes. Held-out "
        "pretext scores come from `pretraining.json` (scenes of seed 3000019, outside every val/test stream).",
        "",
        table,
    ])
    print(table)
    print(f"wall time {wall:.0f} s")
    if args.docs:
        write_section(args.docs, "pretext-probe", section)
    return results


if __name__ == "__main__":
    main()
