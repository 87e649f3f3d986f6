"""`rdm eval train-features`: train the offline feature net on a labelled dataset and write a
model directory with a card (MODEL_CARD.md) that states its test accuracy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..data import load_images
from ..files import check_replaceable_dir
from ..metrics.classifier import (BLOCKS, FeatureNetConfig, FeatureTrainConfig, is_feature_net_dir,
                                  save_feature_net, train_feature_net)
from .common import field_help, positive_list

DESIGNS = {"plain": "2 conv–BN–ReLU",
           "residual": "1 residual block (conv–BN–ReLU–conv–BN + 1×1 conv–BN skip where channels change, ReLU)"}

CARD = """# Feature net `{name}`

A small classifier (`relay_diffusion.metrics.classifier.FeatureNet`) whose {dim}-d penultimate
features serve `rdm eval --features {name_or_dir}` for FID, precision/recall and KID where the
Inception weights are not available. Its numbers compare runs that use this same net; they are
not Inception FIDs.

| | |
|---|---|
| architecture | widths {widths}, {design} per stage, global average pool, {resolution}×{resolution}×{channels} input |
| parameters | {params:,} |
| trained on | `{data}` ({train_images:,} images, {epochs} epochs, batch {batch}, AdamW lr {lr}, ±{shift} px shifts, seed {seed}) |
| training accuracy | {train_accuracy:.2%} |
| **test accuracy** | **{test_accuracy}** on `{test_data}` |
| training time | {seconds:.0f} s on CPU |

Made with:

```bash
{command}
```
"""


def add_train_features_parser(sub) -> None:
    p = sub.add_parser(
        "train-features", help="train the offline feature net (classifier) for `rdm eval --features`",
        description="Train a small classifier on a labelled dataset (EDM zip or folder with "
                    "dataset.json labels) and write a model directory with its card. Its "
                    "penultimate features give FID/precision/recall where Inception weights are "
                    "not available.")
    p.add_argument("--data", required=True, help="labelled training set (zip or folder)")
    p.add_argument("--test-data", help="labelled held-out set for the accuracy in the card")
    p.add_argument("--outdir", required=True, help="model directory to write")
    p.add_argument("--name", help="name in the card (default: the directory name)")
    p.add_argument("--widths", type=positive_list(int), default=[16, 32, 64, 128], metavar="W[,W...]",
                   help="channels per stage (default 16,32,64,128)")
    block = FeatureNetConfig().block
    p.add_argument("--block", default=block, metavar="|".join(BLOCKS),
                   help=f"{field_help(FeatureNetConfig)['block']} [default {block}]")
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it already holds a feature net")
    defaults, helps = FeatureTrainConfig(), field_help(FeatureTrainConfig)
    for f in dataclasses.fields(FeatureTrainConfig):
        value = getattr(defaults, f.name)
        p.add_argument("--" + f.name.replace("_", "-"), type=type(value), default=value,
                       help=f"{helps.get(f.name, '')} [default {value}]")
    p.set_defaults(func=run_train_features)


def check_feature_outdir(outdir: str, force: bool) -> None:
    """Refuse, before any work, an --outdir that would lose data: a file, a folder with other
    content, or an existing feature net without --force."""
    check_replaceable_dir(outdir, force, is_feature_net_dir, "feature net")


def run_train_features(args) -> int:
    import sys

    check_feature_outdir(args.outdir, args.force)
    train_cfg = FeatureTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FeatureTrainConfig)})
    images, labels = load_images(args.data)
    if (labels < 0).any():
        raise ValueError(f"{args.data} has no class labels (dataset.json); the feature net is a classifier")
    test = load_images(args.test_data) if args.test_data else (None, None)
    if test[1] is not None and (test[1] < 0).any():
        raise ValueError(f"{args.test_data} has no class labels")
    widths = tuple(args.widths)
    num_classes = int(labels.max()) + 1
    net_cfg = FeatureNetConfig(resolution=images.shape[-1], channels=images.shape[1],
                               num_classes=num_classes, widths=widths, block=args.block)
    net, info = train_feature_net(images, labels, *test, net_config=net_cfg, train_config=train_cfg)
    name = args.name or Path(args.outdir).name
    info.update(name=name, data=str(args.data), test_data=args.test_data,
                command="rdm " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("rdm") else None)
    card = CARD.format(
        name=name, dim=net_cfg.feature_dim, name_or_dir=args.outdir, widths=widths, design=DESIGNS[net_cfg.block],
        resolution=net_cfg.resolution, channels=net_cfg.channels,
        params=sum(p.numel() for p in net.parameters()), data=args.data,
        train_images=info["train_images"], epochs=train_cfg.epochs, batch=train_cfg.batch,
        lr=train_cfg.lr, shift=train_cfg.shift, seed=train_cfg.seed, train_accuracy=info["train_accuracy"],
        test_accuracy=f"{info['test_accuracy']:.2%}" if "test_accuracy" in info else "not measured",
        test_data=args.test_data, seconds=info["seconds"],
        command=info["command"] or f"rdm eval train-features --data {args.data} --outdir {args.outdir}")
    save_feature_net(args.outdir, net, info, card)
    print(f"wrote {args.outdir}: test accuracy {info.get('test_accuracy', 'not measured')}")
    return 0
