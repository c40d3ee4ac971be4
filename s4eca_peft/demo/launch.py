"""``s4eca-demo``: serve a trained S4ECA adapter as a Gradio app in the browser (docs/demo.md). It listens on the
loopback address unless ``--host`` says otherwise, and makes no public share link unless ``--share`` is given."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..predict_command import add_adapter_arguments


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"expected a port in 1..65535, got {value}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s4eca-demo", description="Serve an S4ECA adapter as a Gradio app: image + "
                                     "expression -> mask, selection maps, mask PNG.")
    add_adapter_arguments(parser, default_reference=True)
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: loopback only).")
    parser.add_argument("--port", type=_port, default=7860, help="Port to listen on (default: 7860).")
    parser.add_argument("--share", action="store_true", help="Also open a public Gradio share link (off by default).")
    parser.add_argument("--workdir", default=None, help="Folder of example scenes and masks (default: a temp dir).")
    parser.add_argument("--title", default=None, help="Page heading.")
    return parser


def load_segmenter(args: argparse.Namespace) -> Any:
    """The `S4ECASegmenter` named by ``--adapter`` and ``--revision``."""
    from ..inference import S4ECASegmenter

    return S4ECASegmenter.from_pretrained(args.adapter, revision=args.revision, device=args.device, dtype=args.dtype,
                                          cache_dir=args.cache_dir)


MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # Gradio refuses a larger upload before it is stored


def serve(args: argparse.Namespace, prevent_thread_lock: bool = False) -> Any:
    """Load the adapter, build the app and launch it; returns the running `gradio.Blocks`."""
    from .app import build_demo, require_gradio

    require_gradio()  # a missing extra fails before the model is loaded
    demo = build_demo(load_segmenter(args), workdir=args.workdir, title=args.title)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD_BYTES,
                prevent_thread_lock=prevent_thread_lock)
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    """``s4eca-demo``; a missing extra, an adapter that does not load or a busy port ends in one line, status 2."""
    args = build_parser().parse_args(argv)
    try:
        serve(args)
    except (ImportError, OSError, ValueError) as error:
        print(f"s4eca-demo: {error}", file=sys.stderr)
        raise SystemExit(2) from error


if __name__ == "__main__":
    main()
