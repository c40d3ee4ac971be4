"""One protocol for training on the synthetic scenes and scoring on their fixed val and test splits, shared by
`accuracy_synthetic`, `adapter_variants` and `pretext_probe`, and the mean ± spread over seeds they report.

Every run goes through `train_and_evaluate`: per seed, the same initialisation, the same stream of fresh synthetic
training scenes, the same steps and batch size, AdamW with the defaults of `s4eca-train`, the final weights scored
with `evaluation.evaluate_loop`. Runs go to processes of their own (`run_all_named`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchmarks.common import (
    METHOD_LABELS,
    build_method,
    count_parameters,
    head_parameters,
    lora_rank_for_budget,
    module_process,
    s4eca_adapter_budget,
)
from benchmarks.resume import load_run_state, save_run_state

ABLATIONS = {
    "s4eca_no_scale": {"scale_selection": False},
    "s4eca_no_spatial": {"spatial_selection": False},
    "s4eca_no_queries": {},
    "s4eca_no_feedback": {"text_feedback": False},
    "s4eca_proxy_attention": {"proxy_attention": True, "vision_bottleneck_size": 77},  # the default budget
}
HEAD_PROTOCOL: dict[str, Any] = {
    "head_reads_sentence": True, "head_place_kernel": False, "head_rank_kernel": False, "head_category_map": False,
    "head_rank_words": False, "head_rank_product": False, "head_sentence_dropout": 0.0,
}
"""The head every run builds unless its protocol names another value: the head these benchmarks were first measured
with (without the kernels `s4eca-train` now adds), so that stored runs stay comparable."""
PROTOCOL: dict[str, Any] = {
    "seed": 0, "learning_rate": 2e-3, "weight_decay": 0.01, "warmup_ratio": 0.05, "lr_scheduler_type": "cosine",
    "max_grad_norm": 1.0, "augment": "all", "eval_batch_size": 32,
}

# ---------------------------------------------------------------------------------------------- one run


@lru_cache(maxsize=4)
def evaluation_split(split: str, image_size: int, num_samples: int):
    from s4eca_peft.data.loaders import load_split

    return load_split("synthetic", split, image_size=image_size, num_samples=num_samples)


def use_sentence_as_proxy(model) -> None:
    """The ``no text queries`` ablation: freeze the text adapter and overwrite its proxies with one proxy per
    expression, the sentence feature, before the vision backbone runs."""
    from s4eca_peft.modeling.modeling import masked_mean
    from s4eca_peft.tuner import S4ECATextLayer

    tuner = model.base_model
    text_model = model.get_base_model().text_model
    for module in text_model.modules():
        if isinstance(module, S4ECATextLayer):
            module.s4eca_text_adapter.requires_grad_(False)

    def hook(module, args, kwargs, output) -> None:
        sentence = masked_mean(output.last_hidden_state, kwargs.get("attention_mask"))  # (batch, text_dim)
        tuner.set_language_proxies(sentence.unsqueeze(1))  # (batch, 1, text_dim)

    text_model.register_forward_hook(hook, with_kwargs=True)


def evaluate_splits(model, dataloaders: dict[str, Any], device, method: str, run: str,
                    protocol: dict[str, Any]) -> dict[str, Any]:
    """Metrics of `model` on each split; with ``protocol["language_use"]``, S4ECA's val also with mismatched
    proxies (``val_mismatched_proxies``)."""
    from accelerate.utils import send_to_device

    from s4eca_peft.training.evaluation import evaluate_loop

    def on_device(dataloader):
        return (send_to_device(batch, device) for batch in dataloader)

    scores = {split: evaluate_loop(model, on_device(dl), desc=split) for split, dl in dataloaders.items()}
    if protocol.get("language_use") and method == "s4eca" and run != "s4eca_no_queries":
        from s4eca_peft.tuner import mismatch_proxies

        handle = mismatch_proxies(model)
        scores["val_mismatched_proxies"] = evaluate_loop(model, on_device(dataloaders["val"]),
                                                         desc="val, mismatched proxies")
        handle.remove()
    return scores


def train_and_evaluate(run: str, protocol: dict[str, Any],
                       on_evaluation: Callable[[int, dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Train `run` under `protocol` and score it on the fixed synthetic val and test scenes. Every run goes
    through this one function; only the model differs.

    With ``protocol["eval_every"]`` and `on_evaluation`, the splits are also scored every that many steps and
    ``on_evaluation(step, scores)`` is called (and once more with the final scores); it returns True to stop
    training there. With ``protocol["checkpoint_dir"]``, the run's state is saved there after each of these
    evaluations and a run finding one continues after its step (reseeded there, so not bit-identical to an
    uninterrupted run). ``protocol["device"]`` (default ``"cpu"``) is where the model trains."""
    import torch
    import transformers
    from accelerate import Accelerator, skip_first_batches
    from accelerate.utils import send_to_device, set_seed
    from torch.utils.data import DataLoader

    import s4eca_peft  # noqa: F401  (registers S4ECA with peft)
    from s4eca_peft.data import ReferringCollator
    from s4eca_peft.data.loaders import (
        EpochSampler,
        KeyedTrainingSet,
        eval_dataloader,
        load_split,
        train_transform,
    )
    from s4eca_peft.training import ModelArguments, set_training_mode, training_step
    from s4eca_peft.training.base_model import build_base_and_processor

    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(protocol["threads"])
    started = time.time()
    seed, size, batch_size, steps = protocol["seed"], protocol["image_size"], protocol["batch_size"], protocol["steps"]

    # ---- model: the same base (and head initialisation) for every run, then the method on top
    set_seed(seed)
    base, processor, notes = build_base_and_processor(
        ModelArguments(vision_model=protocol.get("vision_model"),
                       **{option: protocol.get(option, value) for option, value in HEAD_PROTOCOL.items()}), size)
    method = "s4eca" if run in ABLATIONS else run
    s4eca_kwargs = {**ABLATIONS.get(run, {}), **protocol.get("s4eca_kwargs", {})}  # the run's, then the protocol's
    lora_rank = lora_rank_for_budget(base, s4eca_adapter_budget(base)) if method == "lora" else None
    set_seed(seed + 1)  # the method's own initialisation (adapters, LoRA matrices)
    model = build_method(base, method, lora_rank=lora_rank, s4eca_kwargs=s4eca_kwargs)
    if run == "s4eca_no_queries":
        use_sentence_as_proxy(model)
    trainable = count_parameters(model, trainable_only=True)
    total = count_parameters(model)
    head = head_parameters(model)

    # ---- data: one stream of fresh scenes, the fixed val/test scenes
    stream = load_split("synthetic", "train", image_size=size, seed=seed)
    train_set = KeyedTrainingSet(stream, train_transform(protocol["augment"], seed), seed)
    sampler = EpochSampler(steps * batch_size, seed, fresh=True)
    train_dl = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True,
                          collate_fn=ReferringCollator(processor))
    eval_dls = {
        split: eval_dataloader(evaluation_split(split, size, protocol["num_eval_samples"]), processor,
                               protocol["eval_batch_size"])
        for split in protocol.get("splits", ("val", "test"))
    }

    # ---- optimisation
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=protocol["learning_rate"], weight_decay=protocol["weight_decay"])
    scheduler = transformers.get_scheduler(
        protocol["lr_scheduler_type"], optimizer, num_warmup_steps=int(protocol["warmup_ratio"] * steps),
        num_training_steps=steps,
    )
    device = torch.device(protocol.get("device", "cpu"))
    model.to(device)
    checkpoint = protocol.get("checkpoint_dir")
    done = load_run_state(checkpoint, model, optimizer, scheduler) if checkpoint else 0
    if done:  # continue after the saved step: the same stream, its first batches skipped
        train_dl = skip_first_batches(train_dl, done)
        set_seed(seed + done)
    set_training_mode(model)
    accelerator = Accelerator(cpu=device.type == "cpu")  # the step of `s4eca-train`
    losses = []
    train_started = time.time()
    every = protocol.get("eval_every")
    for batch in train_dl:
        step = done + len(losses) + 1
        loss = training_step(model, send_to_device(batch, device), accelerator, optimizer, scheduler,
                             protocol["max_grad_norm"], where=f"{run}, step {step}")
        losses.append(loss.item())
        if every and on_evaluation and step % every == 0 and step < steps:
            if on_evaluation(step, evaluate_splits(model, eval_dls, device, method, run, protocol)):
                break  # the caller saw enough (early stop)
            if checkpoint:
                save_run_state(checkpoint, step, model, optimizer, scheduler)
    train_seconds = time.time() - train_started

    # ---- evaluation of the final weights
    scores = evaluate_splits(model, eval_dls, device, method, run, protocol)
    if every and on_evaluation:
        on_evaluation(done + len(losses), scores)
    tail = losses[-max(1, len(losses) // 10):]
    return {
        "run": run, "trainable": trainable, "total": total, "head": head, "lora_rank": lora_rank,
        "steps": done + len(losses), "final_loss": sum(tail) / len(tail), "train_s": train_seconds,
        "wall_s": time.time() - started, "notes": notes, **scores,
    }


# ---------------------------------------------------------------------------------------------- seeds


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def score(seeds: list[dict[str, Any]], split: str, metric: str) -> tuple[float, float]:
    """Mean and std over seeds of ``split``'s ``metric``, in %."""
    return mean_std([100 * r[split][metric] for r in seeds])


def format_score(seeds: list[dict[str, Any]], split: str, metric: str) -> str:
    mean, std = score(seeds, split, metric)
    return f"{mean:.2f} ± {std:.2f}" if len(seeds) > 1 else f"{mean:.2f}"


def comparisons(results: dict[str, list[dict[str, Any]]], split: str) -> list[str]:
    """S4ECA against each other row on ``split`` mIoU: the difference of the means, and whether it is larger than the
    seed spread (the two standard deviations added)."""
    if "s4eca" not in results:
        return []
    mean, std = score(results["s4eca"], split, "mIoU")
    lines = []
    for run, seeds in results.items():
        if run == "s4eca":
            continue
        other, other_std = score(seeds, split, "mIoU")
        spread = std + other_std
        difference = mean - other
        verdict = ("above, beyond the seed spread" if difference > spread else "above, within the seed spread"
                   if difference > 0 else "not above")
        lines.append(f"{METHOD_LABELS[run]}: {other:.2f} ({difference:+.2f} for S4ECA, spread {spread:.2f}: "
                     f"S4ECA {verdict})")
    return lines


def run_in_own_process(run: str, protocol: dict[str, Any]) -> dict[str, Any]:
    """`train_and_evaluate` in a process of its own (``python -m benchmarks.synthetic_runs``), which ends with it."""
    prefix, env = module_process("synthetic_runs")
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        command = [*prefix, "--run", run, "--protocol", json.dumps(protocol), "--result", str(result)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{run} (seed {protocol.get('seed')}) failed:\n{done.stderr[-4000:]}")
        return json.loads(result.read_text())


def run_all_named(tasks: dict[str, tuple[str, dict[str, Any]]], jobs: int,
                  on_result: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: (run, protocol)}`` -> ``{name: result}``: each run in a process of its own, ``jobs`` at a time (the
    slowest runs first, so that the processes finish together); ``on_result(name, result)`` as each one ends."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    order = sorted(tasks, key=lambda name: {"full": 0, "lora": 1}.get(tasks[name][0], 2))
    done = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_in_own_process, *tasks[name]): name for name in order}
        for future in as_completed(futures):
            name, result = futures[future], future.result()
            split = "test" if "test" in result else "val"
            print(f"{name}: {split} mIoU {100 * result[split]['mIoU']:.2f}, oIoU {100 * result[split]['oIoU']:.2f} "
                  f"({result['train_s']:.0f} s training)", flush=True)
            if on_result:
                on_result(name, result)
            done[name] = result
    return {name: done[name] for name in tasks}


def run_all(protocol: dict[str, Any], runs: list[str], seeds: list[int], jobs: int) -> dict[str, list[dict[str, Any]]]:
    """``{run: [result per seed]}``; a seed sets the model's and adapters' initialisation and the training stream,
    never the val/test scenes."""
    tasks = {f"{run} seed {seed}": (run, {**protocol, "seed": seed}) for run in runs for seed in seeds}
    done = run_all_named(tasks, jobs)
    return {run: [done[f"{run} seed {seed}"] for seed in seeds] for run in runs}


def main(argv: list[str] | None = None) -> None:
    """One run in this process: ``--run`` under the JSON ``--protocol``, its result written to ``--result``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--run", required=True, help="A method or an ablation (`ABLATIONS`).")
    parser.add_argument("--protocol", required=True, help="The protocol as a JSON object.")
    parser.add_argument("--result", required=True, help="JSON file for the result.")
    args = parser.parse_args(argv)
    result = train_and_evaluate(args.run, json.loads(args.protocol))
    Path(args.result).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
