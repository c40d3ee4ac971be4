"""Train S4ECA adapters: ``accelerate launch examples/train.py [--dataset rrsisd --data_dir DIR ...]``.

With no arguments: the embedded default (offline synthetic aerial scenes, the shipped Swin pretrained on synthetic
aerial scenes and the pretrained MiniLM text encoder, both recorded by package reference, never copied). ``--help``
lists every flag.
"""

from s4eca_peft.cli import train_main

if __name__ == "__main__":
    train_main()
