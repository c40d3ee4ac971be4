"""The embedded default run as a user runs it, and its control without language.

Runs ``accelerate launch examples/train.py`` (no flags: the shipped pretrained Swin, the pretrained MiniLM, fresh
synthetic scenes) and the same command with ``--constant_expression object``, one after the other so each has the
machine to itself, and writes their wall time and val/test metrics into the ``default-run`` section of
docs/training.md. Every synthetic scene holds two or more objects of the target's category, so the gap between the
two rows is what the expression contributes.

    python -m benchmarks.default_run                       # the table in docs/training.md
    python -m benchmarks.default_run --keep outputs/s4eca  # also keep the default run's folder
    python -m benchmarks.default_run --smoke               # 4 steps each, for tests
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, load_average, machine_info, machine_line, markdown_table, write_section

TRAINING_PAGE = REPO / "docs" / "training.md"
CONTROL = ("--constant_expression", "object")
SMOKE = ("--max_train_steps", "4", "--train_samples_per_epoch", "32", "--num_val_samples", "8",
         "--num_test_samples", "8", "--cpu_threads", "1")  # one thread: the suite runs a test process per CPU


def launch_command(output_dir: Path, extra: tuple[str, ...]) -> list[str]:
    """``accelerate launch examples/train.py`` on one process of this machine, writing to ``output_dir``."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "examples" / "train.py"),
            "--output_dir", str(output_dir), *extra]


def timed_run(output_dir: Path, extra: tuple[str, ...]) -> dict[str, Any]:
    """Run one training command; its wall time and the ``eval_results.json`` / ``train_results.json`` it wrote."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    process = subprocess.run(launch_command(output_dir, extra), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(launch_command(output_dir, extra))} failed:\n{process.stdout[-3000:]}"
                           f"\n{process.stderr[-3000:]}")
    return {
        "wall_seconds": seconds,
        "eval": json.loads((output_dir / "eval_results.json").read_text()),
        "train": json.loads((output_dir / "train_results.json").read_text()),
    }


def format_minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def results_table(runs: dict[str, dict[str, Any]]) -> str:
    header = ["run", "wall time", "train steps", "val mIoU", "val oIoU", "test mIoU", "test oIoU"]
    rows = []
    for label, run in runs.items():
        metrics = run["eval"]
        cells = [f"{100 * metrics[split][name]:.2f}" if split in metrics else "-"
                 for split in ("val", "test") for name in ("mIoU", "oIoU")]
        rows.append([label, format_minutes(run["wall_seconds"]), run["train"]["train_steps"], *cells])
    return markdown_table(header, rows)


def section(runs: dict[str, dict[str, Any]], command: str, before: str, after: str) -> str:
    language, control = runs.values()
    gap = {split: 100 * (language["eval"][split]["mIoU"] - control["eval"][split]["mIoU"])
           for split in ("val", "test") if split in language["eval"] and split in control["eval"]}
    gaps = ", ".join(f"{split} {value:+.2f}" for split, value in gap.items())
    return "\n".join([
        f"Command: `{command}` (the two runs one after the other; load average {before} before, {after} after).",
        f"Machine: {machine_line(machine_info(threads=language['train'].get('cpu_threads', 1)))}.",
        "",
        results_table(runs),
        "",
        f"Language over the constant expression, mIoU: {gaps} points. "
        f"`train_results.json` gives {language['train']['train_samples_per_second']:.1f} training samples/s for "
        "the first run.",
    ])


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="4 steps per run on 8 val/test scenes, one torch thread (for tests).")
    parser.add_argument("--keep", default=None, help="Copy the default run's folder here (must not exist).")
    parser.add_argument("--docs", default=str(TRAINING_PAGE), help="Markdown page for the section ('' for none).")
    args = parser.parse_args(argv)
    if args.keep and Path(args.keep).exists():
        parser.error(f"--keep {args.keep!r} exists; pick a new folder (nothing is overwritten).")
    extra = SMOKE if args.smoke else ()
    label = "`accelerate launch examples/train.py`" + (" " + " ".join(extra) if extra else "")
    runs: dict[str, dict[str, Any]] = {}
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="s4eca-default-run-") as scratch:
        for name, folder, flags in ((label, "s4eca", extra),
                                    (f"same with `{' '.join(CONTROL)}` (no language)", "s4eca-constant-expression",
                                     (*extra, *CONTROL))):
            output_dir = Path(scratch) / folder  # the folder name is the model card's name
            runs[name] = timed_run(output_dir, flags)
            print(f"{name}: {format_minutes(runs[name]['wall_seconds'])}, {json.dumps(runs[name]['eval'])}",
                  flush=True)
            if args.keep and len(runs) == 1:
                shutil.copytree(output_dir, args.keep)
    command = "python -m benchmarks.default_run" + (" --smoke" if args.smoke else "")
    if args.docs:
        write_section(args.docs, "default-run", section(runs, command, before, load_average()))
    return runs


if __name__ == "__main__":
    main()
