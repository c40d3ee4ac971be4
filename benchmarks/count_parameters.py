"""Count S4ECA's trainable parameters at the paper's scale: Swin-B (480x480) + BERT-base, built offline from configs.

The paper reports that the adapters update 2.4 % of the backbones' parameters. This prints the adapter parameters
(text adapter, vision adapters) as a share of the two frozen backbones, and the segmentation head separately.
The backbone configs are the benchmarks' own (`common.backbone_configs`); ``--tiny`` counts the tiny ones instead
(seconds instead of a minute, for a quick check of the script).

    python -m benchmarks.count_parameters
    python -m benchmarks.count_parameters --vision-bottleneck-size 64 --num-queries 8
    python -m benchmarks.count_parameters --tiny
"""

from __future__ import annotations

import argparse

import torch
import transformers
from peft import get_peft_model

import s4eca_peft  # noqa: F401  (registers S4ECA with peft)
from benchmarks.common import backbone_configs, count_parameters, head_parameters
from s4eca_peft.modeling import ReferringSegmentationConfig, ReferringSegmentationModel
from s4eca_peft.tuner import S4ECAConfig, S4ECATextLayer, S4ECAVisionLayer


def adapter_parameters(model: torch.nn.Module, layer_cls: type) -> int:
    """Parameters of the S4ECA adapters inside the tuner layers of `layer_cls` (the wrapped blocks excluded)."""
    total = 0
    for module in model.modules():
        if isinstance(module, layer_cls):
            for name in module.adapter_layer_names:
                total += count_parameters(getattr(module, name))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=480)
    parser.add_argument("--vision-bottleneck-size", type=int, default=None)
    parser.add_argument("--text-bottleneck-size", type=int, default=None)
    parser.add_argument("--num-queries", type=int, default=None)
    parser.add_argument("--proxy-attention", action="store_true", help="With pixel-to-proxy attention.")
    parser.add_argument("--tiny", action="store_true", help="Tiny Swin + BERT instead of Swin-B + BERT-base.")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    vision_config, text_config = backbone_configs(args.image_size, args.tiny, window_size=12 if not args.tiny else None)
    model = ReferringSegmentationModel(ReferringSegmentationConfig(vision_config=vision_config, text_config=text_config))
    vision_backbone = count_parameters(model.vision_model.backbone)
    text_backbone = count_parameters(model.text_model)
    backbones = vision_backbone + text_backbone

    overrides = {
        "vision_bottleneck_size": args.vision_bottleneck_size,
        "text_bottleneck_size": args.text_bottleneck_size,
        "num_queries": args.num_queries,
    }
    peft_config = S4ECAConfig(**{k: v for k, v in overrides.items() if v is not None},
                              proxy_attention=args.proxy_attention)
    peft_model = get_peft_model(model, peft_config)
    text_adapters = adapter_parameters(peft_model, S4ECATextLayer)
    vision_adapters = adapter_parameters(peft_model, S4ECAVisionLayer)
    adapters = text_adapters + vision_adapters
    head = head_parameters(peft_model)
    trainable = count_parameters(peft_model, trainable_only=True)
    resolved = peft_model.peft_config["default"]

    names = "a tiny Swin + BERT" if args.tiny else "Swin-B + BERT-base"
    print(f"S4ECA at {names} ({args.image_size}x{args.image_size}), built from configs")
    print(
        f"config: num_queries={resolved.num_queries} text_bottleneck_size={resolved.text_bottleneck_size} "
        f"vision_bottleneck_size={resolved.vision_bottleneck_size} dilations={resolved.extractor_dilations} "
        f"kernels={resolved.extractor_kernel_sizes} proxy_attention={resolved.proxy_attention}"
    )
    print(f"  text targets: {resolved.text_target_modules}; vision targets: {len(resolved.vision_target_modules)}")
    print(f"vision backbone (SwinBackbone)   {vision_backbone:>13,}")
    print(f"text backbone (BertModel)        {text_backbone:>13,}")
    print(f"backbones                        {backbones:>13,}")
    print(f"text adapter                     {text_adapters:>13,}")
    print(f"vision adapters                  {vision_adapters:>13,}")
    print(f"adapters                         {adapters:>13,}  = {100 * adapters / backbones:.2f} % of the backbones")
    print(f"segmentation head (trained)      {head:>13,}")
    print(f"trainable (adapters + head)      {trainable:>13,}")
    assert trainable == adapters + head, "every trainable parameter is an adapter or head parameter"


if __name__ == "__main__":
    main()
