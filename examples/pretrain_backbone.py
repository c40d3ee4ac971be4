"""Rebuild the embedded vision backbone from scratch: ``python examples/pretrain_backbone.py [--output_dir DIR]``.

The same as the ``s4eca-pretrain-backbone`` console script; ``--help`` lists every flag.
"""

from s4eca_peft.pretraining.command import main

if __name__ == "__main__":
    main()
