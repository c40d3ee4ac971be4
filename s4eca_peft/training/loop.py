"""Train S4ECA adapters with Accelerate: one GPU, several GPUs or CPU processes, with resumable checkpoints.

Supported modes (all through ``accelerate launch examples/train.py ...``):
  - single CPU or GPU; ``--mixed_precision bf16|fp16`` through Accelerate's own flag (the frozen encoders are then
    stored in that dtype; adapters and head train in float32); ``--torch_compile`` compiles the adapters;
  - several processes (``--multi_gpu --num_processes N``; on CPU set ``ACCELERATE_USE_CPU=true``);
  - ``--resume_from_checkpoint latest`` after a crash: adapter, optimizer, scheduler, RNG and step are restored.

With no arguments the run is the embedded default: offline, fresh synthetic aerial scenes every epoch, the small
Swin pretrained on synthetic aerial scenes that ships in the package, and the pretrained MiniLM text encoder.

`training_function` reads top to bottom: set up (model, data, optimisation, checkpoints), train epoch by epoch
(`train_epoch`, one `training_step` per batch), validate and keep the best adapter (`validate_and_keep_best`), and
finalize (best adapter on val and test, curves, overlays, model card, Hub upload).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.synthetic import DATA_VERSION
from ..files import write_json_atomic
from ..inference.adapter_folder import RUN_ADAPTER_DIR, save_for_inference
from ..inference.visualization import plot_training_curves
from ..modeling import compute_dtype
from ..tuner import compile_adapters
from .arguments import TrainConfig, TrainingArguments, parse_train_args
from .base_model import build_base_and_processor
from .checkpoints import CheckpointManager, RunState, load_adapter_weights
from .dataloaders import EpochSampler, build_dataloaders, build_datasets, train_sampler_for
from .evaluation import evaluate_loop, save_overlays
from .run_folder import acquire_lock, claim_output_dir, release_lock


@dataclass(frozen=True)
class Schedule:
    """Optimizer steps per epoch and in total (``max_train_steps`` wins over epochs when given)."""

    steps_per_epoch: int
    max_train_steps: int

    @property
    def num_train_epochs(self) -> int:
        return math.ceil(self.max_train_steps / self.steps_per_epoch)


def plan_schedule(training: TrainingArguments, num_samples: int, num_processes: int) -> Schedule:
    """The schedule of ``num_samples`` training samples per epoch read by ``num_processes`` processes."""
    batches_per_epoch = math.ceil(num_samples / training.per_device_train_batch_size / num_processes)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / training.gradient_accumulation_steps))
    max_steps = training.max_train_steps or training.num_train_epochs * steps_per_epoch
    return Schedule(steps_per_epoch, max_steps)


def set_training_mode(model: torch.nn.Module) -> None:
    """Adapters and head train; the frozen encoders run in eval mode (no dropout, attention dropout included).

    Their noise is not learned from, and it would make a resumed run differ from an uninterrupted one.
    """
    model.train()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.encoders_eval()


def training_step(
    model: torch.nn.Module, batch: dict[str, Any], accelerator: Any, optimizer: Any, scheduler: Any,
    max_grad_norm: float, where: str = "",
) -> torch.Tensor:
    """One forward and backward pass, with the optimizer and scheduler step when gradients synchronise.

    Returns the (detached) loss. A non-finite loss raises `FloatingPointError` naming ``where`` it happened.
    """
    with accelerator.accumulate(model):
        outputs = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"], labels=batch["labels"])
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


@dataclass
class TrainingSession:
    """The prepared pieces of one run (what `set_up` builds and the other steps use)."""

    config: TrainConfig
    accelerator: Any
    model: Any
    processor: Any
    optimizer: Any
    scheduler: Any
    train_dataloader: Any
    eval_dataloaders: dict[str, Any]
    sampler: EpochSampler
    schedule: Schedule
    checkpoints: CheckpointManager
    datasets: dict[str, Any]
    parameter_counts: tuple[int, int]  # (trainable, total)
    started: float

    @property
    def output_dir(self) -> Path:
        return Path(self.config.training.output_dir)

    @property
    def adapter_dir(self) -> Path:
        """The best adapter so far, ``<output_dir>/adapter`` (replaced as a whole by a better one)."""
        return self.output_dir / RUN_ADAPTER_DIR


def build_model(config: TrainConfig, accelerator: Any) -> tuple[Any, Any, tuple[int, int]]:
    """The frozen encoders and head wrapped with S4ECA adapters, its processor, and (trainable, total) counts."""
    from peft import get_peft_model

    base, processor, notes = build_base_and_processor(config.model, config.data.image_size)
    for note in notes:
        accelerator.print(note)
    model = get_peft_model(base, config.s4eca.to_config())
    dtype = compute_dtype(accelerator.mixed_precision)
    if dtype is not None:  # every forward runs under the accelerator's autocast: no per-step cast of frozen weights
        cast = base.cast_frozen_parameters(dtype)
        accelerator.print(f"frozen encoders stored in {dtype} ({cast} tensors); adapters and head stay float32")
    if config.training.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.training.torch_compile:
        accelerator.print(f"torch.compile: {compile_adapters(model)} adapter modules")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    accelerator.print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f} %)")
    return model, processor, (trainable, total)


def build_optimizer(model: torch.nn.Module, training: TrainingArguments, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (float32 under mixed precision too); its fused kernels on CUDA."""
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=training.learning_rate,
        weight_decay=training.weight_decay, fused=torch.device(device).type == "cuda",
    )


def make_accelerator(training: TrainingArguments) -> Any:
    """The run's `accelerate.Accelerator` (nothing is written to ``output_dir`` yet)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    output_dir = Path(training.output_dir)
    return Accelerator(
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        log_with=None if training.report_to == "none" else training.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )


def set_up(config: TrainConfig, accelerator: Any) -> TrainingSession:
    """Seeded model, data, optimizer and schedule, all prepared with ``accelerator``; checkpoint hooks registered."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    training, output_dir = config.training, Path(config.training.output_dir)
    accelerator.print(f"s4eca-train: {accelerator.num_processes} process(es) on {accelerator.device}, "
                      f"mixed precision {accelerator.mixed_precision}")
    started = time.time()
    set_seed(training.seed)  # before the model is built
    model, processor, counts = build_model(config, accelerator)
    datasets = build_datasets(config.data, training.seed)
    for split in ("train", "val"):
        if len(datasets[split]) == 0:
            raise ValueError(f"The {split} split of --dataset {config.data.dataset} has no samples"
                             + (f" (in --data_dir {config.data.data_dir})" if config.data.data_dir else "")
                             + "; check the dataset's files (s4eca-prepare-data reports what it finds).")
    sampler = train_sampler_for(config.data, training.seed, datasets)
    train_dl, eval_dls = build_dataloaders(config.data, training, datasets, processor, sampler)
    optimizer = build_optimizer(model, training, accelerator.device)
    schedule = plan_schedule(training, len(sampler), accelerator.num_processes)
    scheduler = get_scheduler(
        training.lr_scheduler_type, optimizer,
        num_warmup_steps=int(training.warmup_ratio * schedule.max_train_steps),
        num_training_steps=schedule.max_train_steps,
    )
    model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    eval_dls = {split: accelerator.prepare(dl) for split, dl in eval_dls.items()}
    checkpoints = CheckpointManager(accelerator, output_dir / "checkpoints", training.checkpoints_total_limit)
    return TrainingSession(config, accelerator, model, processor, optimizer, scheduler, train_dl, eval_dls, sampler,
                           schedule, checkpoints, datasets, counts, started)


def scalar_hyperparameters(config: TrainConfig) -> dict[str, Any]:
    """Every int, float, str or bool argument of the run, by field name (for the experiment trackers)."""
    values: dict[str, Any] = {}
    for part in (config.model, config.s4eca, config.data, config.training):
        values.update({k: v for k, v in dataclasses.asdict(part).items() if isinstance(v, (int, float, str, bool))})
    return values


def train_epoch(session: TrainingSession, state: RunState, progress: Any) -> bool:
    """Read the rest of epoch ``state.epoch``, one optimizer step at a time, until it ends or the run's last step.

    Returns whether the epoch was finished (``state`` then points at the next one).
    """
    accelerator, training = session.accelerator, session.config.training
    session.sampler.epoch = state.epoch
    skip = state.batches_in_epoch
    batches = accelerator.skip_first_batches(session.train_dataloader, skip) if skip else session.train_dataloader
    tick = time.perf_counter()  # training time: data loading and steps, not validation or checkpoint saves
    for batch in batches:
        where = (f"optimizer step {state.completed_steps + 1} (epoch {state.epoch}, batch {state.batches_in_epoch})")
        loss = training_step(session.model, batch, accelerator, session.optimizer, session.scheduler,
                             training.max_grad_norm, where)
        state.batches_in_epoch += 1
        if not accelerator.sync_gradients:
            continue
        state.completed_steps += 1
        progress.update(1)
        now = time.perf_counter()
        state.train_seconds += now - tick
        tick = now
        log_loss(session, state, loss, progress)
        if training.checkpoint_every is not None and state.completed_steps % training.checkpoint_every == 0:
            session.checkpoints.save(state)
            tick = time.perf_counter()
        if state.completed_steps >= session.schedule.max_train_steps:
            break
    finished = state.batches_in_epoch >= len(session.train_dataloader)
    if finished:
        state.epoch += 1
        state.batches_in_epoch = 0
    return finished


def log_loss(session: TrainingSession, state: RunState, loss: torch.Tensor, progress: Any) -> None:
    """Record the step's loss (mean over processes); every ``logging_steps`` show it and send it to the trackers."""
    accelerator = session.accelerator
    loss_value = accelerator.gather(loss.float().reshape(1)).mean().item()
    state.losses.append([state.completed_steps, loss_value])
    if state.completed_steps % session.config.training.logging_steps == 0:
        learning_rate = session.scheduler.get_last_lr()[0]
        progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{learning_rate:.2e}")
        accelerator.log({"train/loss": loss_value, "train/lr": learning_rate}, step=state.completed_steps)


def validate_and_keep_best(session: TrainingSession, state: RunState) -> dict[str, Any]:
    """Score the val split; when oIoU improves, save the adapter for inference as ``<output_dir>/adapter``."""
    accelerator = session.accelerator
    metrics = evaluate_loop(session.model, session.eval_dataloaders["val"], accelerator, desc="validation")
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
                accelerator.unwrap_model(session.model), session.processor, session.adapter_dir,
                extra_metadata={"dataset": session.config.data.dataset, "best_step": state.completed_steps,
                                "val": metrics, "seed": session.config.training.seed},
            )
        accelerator.wait_for_everyone()
    set_training_mode(accelerator.unwrap_model(session.model))
    return metrics


def train(session: TrainingSession, state: RunState) -> None:
    """Epochs until the last step: validate every ``eval_every_epochs`` and at the end, checkpoint as asked."""
    from tqdm.auto import tqdm

    training, max_steps = session.config.training, session.schedule.max_train_steps
    progress = tqdm(total=max_steps, initial=state.completed_steps, desc="training",
                    disable=not session.accelerator.is_local_main_process)
    set_training_mode(session.accelerator.unwrap_model(session.model))
    while state.completed_steps < max_steps:
        finished_epoch = train_epoch(session, state, progress)
        last = state.completed_steps >= max_steps
        if last or (finished_epoch and state.epoch % training.eval_every_epochs == 0):
            validate_and_keep_best(session, state)
        if finished_epoch and training.checkpoint_every is None and not last:
            session.checkpoints.save(state)
    progress.close()
    if not state.history or state.history[-1]["step"] != state.completed_steps:
        validate_and_keep_best(session, state)


def training_statistics(session: TrainingSession, state: RunState, wall_time: float) -> dict[str, Any]:
    """Steps, samples, time spent training (data loading and optimizer steps; validation and checkpoint saves
    excluded) and samples per second over all processes, the whole run's wall time, and on a GPU the peak memory
    allocated by torch on this process (validation included)."""
    accelerator, training = session.accelerator, session.config.training
    samples = (state.completed_steps * training.per_device_train_batch_size * training.gradient_accumulation_steps
               * accelerator.num_processes)
    seconds = state.train_seconds
    stats: dict[str, Any] = {
        "train_steps": state.completed_steps,
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


def finalize(session: TrainingSession, state: RunState) -> dict[str, Any]:
    """Score the best adapter on val and test; write results, curves, overlays and the card; upload if asked."""
    from ..metrics import metrics_markdown_table
    from .launch_command import LaunchOptions
    from .run_card import write_model_card

    accelerator, output_dir = session.accelerator, session.output_dir
    results = {"val": {"split": "val", **state.best}}
    if "test" in session.eval_dataloaders:
        load_adapter_weights(accelerator.unwrap_model(session.model), session.adapter_dir)
        test = evaluate_loop(session.model, session.eval_dataloaders["test"], accelerator, desc="test")
        results["test"] = {"split": "test", **test}
    if session.config.data.dataset == "synthetic":
        results = {split: {**metrics, "data_version": DATA_VERSION} for split, metrics in results.items()}
    wall_time = time.time() - session.started
    train_results = training_statistics(session, state, wall_time)
    accelerator.print("training: " + ", ".join(f"{k} {v}" for k, v in train_results.items()))
    if accelerator.is_main_process:
        write_json_atomic(output_dir / "eval_results.json", results)
        write_json_atomic(output_dir / "train_results.json", train_results)
        for split, metrics in results.items():
            accelerator.print(metrics_markdown_table({k: v for k, v in metrics.items() if k != "split"}, split))
        plot_training_curves([s for s, _ in state.losses], [v for _, v in state.losses], state.history,
                             output_dir / "training_curves.png")
        model = accelerator.unwrap_model(session.model)
        save_overlays(model, session.processor, session.datasets["val"], output_dir / "val_overlays.png")
        trainable, total = session.parameter_counts
        write_model_card(session.config, output_dir, results, trainable=trainable, total=total, wall_time=wall_time,
                         launch=LaunchOptions.from_accelerator(accelerator))
        training = session.config.training
        if training.push_to_hub:
            from .hub import push_adapter_to_hub

            url = push_adapter_to_hub(output_dir, training.hub_model_id, private=training.hub_private)
            accelerator.print(f"pushed to {url}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def training_function(config: TrainConfig) -> dict[str, Any]:
    """Train, validate, checkpoint and report one run; returns ``{"val": metrics, "test": metrics}``.

    The run first takes ``--output_dir``: its lock, and its marker unless the folder holds another run (see
    `s4eca_peft.training.run_folder`)."""
    training, lock = config.training, None
    accelerator = make_accelerator(training)
    try:
        if accelerator.is_main_process:
            lock = acquire_lock(training.output_dir)
            claim_output_dir(training.output_dir, training.resume_from_checkpoint, training.overwrite_output_dir)
        accelerator.wait_for_everyone()
        session = set_up(config, accelerator)
        state = session.checkpoints.resume(training.resume_from_checkpoint)
        if session.accelerator.is_main_process and training.report_to != "none":
            session.accelerator.init_trackers("s4eca", config=scalar_hyperparameters(config))
        train(session, state)
        return finalize(session, state)
    finally:
        if lock is not None:
            release_lock(lock)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``s4eca-train`` and ``examples/train.py``."""
    return training_function(parse_train_args(argv))

