"""A browser demo of an S4ECA adapter (``s4eca-demo``; Gradio comes with the ``demo`` extra): `build_demo` returns
the `gradio.Blocks` app, `DemoSession` does its work without Gradio."""

from .app import DemoSession, SegmentationView, build_demo, require_gradio

__all__ = ["DemoSession", "SegmentationView", "build_demo", "require_gradio"]
