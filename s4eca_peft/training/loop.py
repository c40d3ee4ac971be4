"""Train S4ECA adapters with Accelerate: one GPU, several GPUs or CPU processes, with resumable checkpoints
(modes and flags: docs/training.md). `training_function` reads top to bottom: set-up, data, model, optimizer and
schedule, ``accelerator.prepare``, resume, the epoch loop, the report; its helpers are the run state and checkpoint
manager (`checkpoints`) and the run folder (`run_folder`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..adapter_folder import RUN_ADAPTER_DIR, save_for_inference
from ..data.loaders import build_dataloaders, build_datasets, train_sampler_for
from ..files import write_json_atomic
from ..inference.visualization import plot_training_curves
from ..modeling import compute_dtype
from ..modeling.packaged import REFERENCE_POINTER
from ..tuner import compile_adapters
from .arguments import TrainConfig, TrainingArguments, parse_train_args
from .base_model import build_base_and_processor
from .checkpoints import CheckpointManager, load_adapter_weights
from .evaluation import evaluate_loop, save_overlays
from .run_folder import acquire_lock, claim_output_dir, release_lock


def total_train_steps(training: TrainingArguments, num_samples: int, num_processes: int) -> int:
    """Optimizer steps of the run: ``max_train_steps`` when given, else the epochs of ``num_samples`` training samples
    read by ``num_processes`` processes."""
    batches_per_epoch = math.ceil(num_samples / training.per_device_train_batch_size / num_processes)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / training.gradient_accumulation_steps))
    return training.max_train_steps or training.num_train_epochs * steps_per_epoch


def cpu_threads_per_process(local_processes: int) -> int:
    """The CPUs this process may use, shared evenly among this machine's ``local_processes`` (at least one)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, available // max(1, local_processes))


def set_training_mode(model: torch.nn.Module) -> None:
    """Adapters and head train; the frozen encoders run in eval mode (no dropout, attention dropout included): their
    noise is not learned from, and it would make a resumed run differ from an uninterrupted one."""
    model.train()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.encoders_eval()


def training_step(
    model: torch.nn.Module, batch: dict[str, Any], accelerator: Any, optimizer: Any, scheduler: Any,
    max_grad_norm: float, where: str = "",
) -> torch.Tensor:
    """One forward and backward pass, with the optimizer and scheduler step when gradients synchronise; returns the
    detached loss. A non-finite loss raises `FloatingPointError` naming ``where`` it happened."""
    with accelerator.accumulate(model):
        outputs = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"], labels=batch["labels"],
                        category_labels=batch.get("category_labels"))
        loss = outputs.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Non-finite loss ({loss.item()}) at {where or 'this step'}; lower --learning_rate or check the data."
            )
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return loss.detach()


def build_optimizer(model: torch.nn.Module, training: TrainingArguments, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (float32 under mixed precision too); its fused kernels on CUDA."""
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=training.learning_rate,
        weight_decay=training.weight_decay, fused=torch.device(device).type == "cuda",
    )


def training_function(config: TrainConfig) -> dict[str, Any]:
    """Train, validate, checkpoint and report one run in ``--output_dir`` (taken first: `run_folder`); returns
    ``{"val": metrics, "test": metrics}``."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from peft import get_peft_model
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from ..metrics import metrics_markdown_table
    from .launch_command import LaunchOptions
    from .run_card import write_model_card

    # Set-up: the accelerator and the run folder (locked for the run).
    training, data = config.training, config.data
    output_dir = Path(training.output_dir)
    adapter_dir = output_dir / RUN_ADAPTER_DIR  # the best adapter so far, replaced as a whole by a better one
    accelerator = Accelerator(
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        log_with=None if training.report_to == "none" else training.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    if accelerator.device.type == "cpu":
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(training.cpu_threads or cpu_threads_per_process(local_processes))
    with contextlib.ExitStack() as run_folder:
        if accelerator.is_main_process:
            run_folder.callback(release_lock, acquire_lock(output_dir))
            claim_output_dir(output_dir, training.resume_from_checkpoint, training.overwrite_output_dir)
        accelerator.wait_for_everyone()
        accelerator.print(f"s4eca-train: {accelerator.num_processes} process(es) on {accelerator.device}"
                          + (f" ({torch.get_num_threads()} threads each)" if accelerator.device.type == "cpu" else "")
                          + f", mixed precision {accelerator.mixed_precision}")
        started = time.time()

        # Data: the splits and the resume-safe sampler (the dataloaders follow the model, read by its processor).
        datasets = build_datasets(data, training.seed)
        for split in ("train", "val"):
            if len(datasets[split]) == 0:
                raise ValueError(f"The {split} split of --dataset {data.dataset} has no samples"
                                 + (f" (in --data_dir {data.data_dir})" if data.data_dir else "")
                                 + "; check the dataset's files (s4eca-prepare-data reports what it finds).")
        sampler = train_sampler_for(data, training.seed, datasets)

        # Model: frozen encoders and head wrapped with S4ECA adapters; the dataloaders through its processor.
        set_seed(training.seed)  # before the model is built
        base, processor, notes = build_base_and_processor(config.model, data.image_size)
        accelerator.print("\n".join(notes))
        model = get_peft_model(base, config.s4eca.to_config())
        dtype = compute_dtype(accelerator.mixed_precision)
        if dtype is not None:  # every forward runs under the accelerator's autocast: no per-step cast of frozen weights
            cast = base.cast_frozen_parameters(dtype)
            accelerator.print(f"frozen encoders stored in {dtype} ({cast} tensors); adapters and head stay float32")
        if training.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if training.torch_compile:
            accelerator.print(f"torch.compile: {compile_adapters(model)} adapter modules")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        accelerator.print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f} %)")

        train_dataloader, eval_dataloaders = build_dataloaders(data, training, datasets, processor, sampler)

        # Optimizer and schedule.
        optimizer = build_optimizer(model, training, accelerator.device)
        max_steps = total_train_steps(training, len(sampler), accelerator.num_processes)
        scheduler = get_scheduler(training.lr_scheduler_type, optimizer,
                                  num_warmup_steps=int(training.warmup_ratio * max_steps), num_training_steps=max_steps)

        # Prepare, then resume: adapter, optimizer, scheduler, RNG and the position in the data.
        model, optimizer, train_dataloader, scheduler = accelerator.prepare(
            model, optimizer, train_dataloader, scheduler)
        eval_dataloaders = {split: accelerator.prepare(dl) for split, dl in eval_dataloaders.items()}
        checkpoints = CheckpointManager(accelerator, output_dir / "checkpoints", training.checkpoints_total_limit)
        state = checkpoints.resume(training.resume_from_checkpoint)
        if accelerator.is_main_process and training.report_to != "none":
            hyperparameters = {name: value for part in (config.model, config.s4eca, data, training)
                               for name, value in dataclasses.asdict(part).items()
                               if isinstance(value, (int, float, str, bool))}
            accelerator.init_trackers("s4eca", config=hyperparameters)

        def validate_and_keep_best() -> None:
            """Score the val split; when oIoU improves, save the adapter for inference in ``adapter_dir``."""
            metrics = evaluate_loop(model, eval_dataloaders["val"], accelerator, desc="validation")
            record = {"step": state.completed_steps, "epoch": state.epoch, **metrics}
            state.history.append(record)
            scores = {k: v for k, v in metrics.items() if isinstance(v, float)}
            accelerator.print(f"epoch {state.epoch} step {state.completed_steps}: "
                              + ", ".join(f"{k} {100 * v:.2f}" for k, v in scores.items()))
            accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=state.completed_steps)
            if state.best is None or metrics["oIoU"] > state.best["oIoU"]:
                state.best = record
                if accelerator.is_main_process:
                    save_for_inference(
                        accelerator.unwrap_model(model), processor, adapter_dir,
                        extra_metadata={"dataset": data.dataset, "best_step": state.completed_steps,
                                        "val": metrics, "seed": training.seed},
                    )
                accelerator.wait_for_everyone()
            set_training_mode(accelerator.unwrap_model(model))

        # Train epoch by epoch: validate every `eval_every_epochs` and at the end, checkpoint every
        # `checkpoint_every` steps or at the end of every epoch.
        progress = tqdm(total=max_steps, initial=state.completed_steps, desc="training",
                        disable=not accelerator.is_local_main_process)
        set_training_mode(accelerator.unwrap_model(model))
        while state.completed_steps < max_steps:
            sampler.epoch = state.epoch
            skip = state.batches_in_epoch
            batches = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
            tick = time.perf_counter()  # training time: data loading and steps, not validation or checkpoint saves
            for batch in batches:
                where = f"optimizer step {state.completed_steps + 1} (epoch {state.epoch}, batch {state.batches_in_epoch})"
                loss = training_step(model, batch, accelerator, optimizer, scheduler, training.max_grad_norm, where)
                state.batches_in_epoch += 1
                if not accelerator.sync_gradients:
                    continue
                state.completed_steps += 1
                progress.update(1)
                now = time.perf_counter()
                state.train_seconds += now - tick
                tick = now
                loss_value = accelerator.gather(loss.float().reshape(1)).mean().item()  # mean over processes
                state.losses.append([state.completed_steps, loss_value])
                if state.completed_steps % training.logging_steps == 0:
                    learning_rate = scheduler.get_last_lr()[0]
                    progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{learning_rate:.2e}")
                    accelerator.log({"train/loss": loss_value, "train/lr": learning_rate}, step=state.completed_steps)
                if training.checkpoint_every is not None and state.completed_steps % training.checkpoint_every == 0:
                    checkpoints.save(state)
                    tick = time.perf_counter()
                if state.completed_steps >= max_steps:
                    break
            finished_epoch = state.batches_in_epoch >= len(train_dataloader)
            if finished_epoch:
                state.epoch += 1
                state.batches_in_epoch = 0
            last = state.completed_steps >= max_steps
            if last or (finished_epoch and state.epoch % training.eval_every_epochs == 0):
                validate_and_keep_best()
            if finished_epoch and training.checkpoint_every is None and not last:
                checkpoints.save(state)
        progress.close()
        if not state.history or state.history[-1]["step"] != state.completed_steps:
            validate_and_keep_best()

        # Report: the best adapter on val and test; results, curves, overlays, the card; the Hub upload if asked.
        results = {"val": {"split": "val", **state.best}}
        if "test" in eval_dataloaders:
            load_adapter_weights(accelerator.unwrap_model(model), adapter_dir)
            results["test"] = {"split": "test", **evaluate_loop(model, eval_dataloaders["test"], accelerator,
                                                                 desc="test")}
        if data.dataset == "synthetic":
            results = {split: {**metrics, "data_version": data.data_version} for split, metrics in results.items()}
        wall_time = time.time() - started
        # training time excludes validation and checkpoint saves; the peak memory includes validation
        samples = (state.completed_steps * training.per_device_train_batch_size * training.gradient_accumulation_steps
                   * accelerator.num_processes)
        train_results: dict[str, Any] = {
            "train_steps": state.completed_steps, "train_samples": samples,
            "train_runtime_s": round(state.train_seconds, 2),
            "train_samples_per_second": round(samples / state.train_seconds, 2) if state.train_seconds > 0 else None,
            "wall_time_s": round(wall_time, 2), "num_processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision,
        }
        if accelerator.device.type == "cpu":
            train_results["cpu_threads"] = torch.get_num_threads()
        if accelerator.device.type == "cuda":
            train_results["peak_gpu_memory_gib"] = round(
                torch.cuda.max_memory_allocated(accelerator.device) / 2**30, 2)
        accelerator.print("training: " + ", ".join(f"{k} {v}" for k, v in train_results.items()))
        if accelerator.is_main_process:
            write_json_atomic(output_dir / "eval_results.json", results)
            write_json_atomic(output_dir / "train_results.json", train_results)
            for split, metrics in results.items():
                accelerator.print(metrics_markdown_table({k: v for k, v in metrics.items() if k != "split"}, split))
            if data.dataset == "synthetic":
                accelerator.print(REFERENCE_POINTER)
            plot_training_curves([s for s, _ in state.losses], [v for _, v in state.losses], state.history,
                                 output_dir / "training_curves.png")
            save_overlays(accelerator.unwrap_model(model), processor, datasets["val"], output_dir / "val_overlays.png")
            write_model_card(config, output_dir, results, trainable=trainable, total=total, wall_time=wall_time,
                             launch=LaunchOptions.from_accelerator(accelerator))
            if training.push_to_hub:
                from .hub import push_adapter_to_hub

                url = push_adapter_to_hub(output_dir, training.hub_model_id, private=training.hub_private)
                accelerator.print(f"pushed to {url}")
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``s4eca-train`` and ``examples/train.py``."""
    return training_function(parse_train_args(argv))
