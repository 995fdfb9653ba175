"""Training recipes as data: the ones the synthetic-dataset papers use, read from their code.

- ``vec2face``: Vec2Face / VFace (HaiyuWu/Vec2Face): IResNet-50, ArcFace s=64 m=0.5, SGD lr 0.1
  momentum 0.9 weight decay 5e-4, batch 128, 26 epochs, lr ÷10 at epochs 12, 20, 24, fp16,
  horizontal flip + random erasing.
- ``idiff-face``: IDiff-Face (fdbtrs/IDiff-Face): CosFace s=64 m=0.35, the same optimiser,
  40 epochs, RandAugment (4 ops, magnitude 16).
- ``adaface``: AdaFace (mk-minchul/AdaFace): m=0.4 h=0.333, crop / low-resolution / photometric
  augmentation each with p=0.2.
- ``cpu-test``: a few-minute CPU recipe for the tests and the README's tiny walk-through.

``facegen fr-train --recipe NAME`` starts from one; ``--arch``, ``--epochs``, ``--batch-size``,
``--lr``, ``--image-size`` override its fields.  ``facegen fr-train --show-recipe NAME`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from facegen.errors import InvalidArgumentError

HEADS = ("arcface", "cosface", "adaface")
AUGMENTATIONS = ("flip", "erase", "randaugment", "crop", "lowres", "photometric")


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str = "r50"
    head: str = "arcface"
    scale: float = 64.0
    margin: float = 0.5                 # radians (ArcFace, AdaFace) or cosine (CosFace)
    h: float = 0.333                    # AdaFace's norm-concentration scaler
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 26
    milestones: tuple[int, ...] = (12, 20, 24)   # epochs at which lr is divided by 10
    warmup_epochs: float = 0.0
    embedding_size: int = 512
    image_size: int = 112
    augment: tuple[str, ...] = ("flip", "erase")
    augment_p: float = 0.5              # probability of each augmentation that has one
    mixed_precision: str = "fp16"       # on GPU; CPU trains in fp32
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["augment"] = list(self.augment)
        return d


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("vec2face", source="Vec2Face/VFace (HaiyuWu/Vec2Face, IResNet-50 ArcFace config)"),
    # milestones: the Vec2Face schedule stretched to 40 epochs (not confirmed from IDiff-Face's code)
    Recipe("idiff-face", head="cosface", margin=0.35, epochs=40, milestones=(18, 31, 37),
           augment=("flip", "randaugment"), source="IDiff-Face (fdbtrs/IDiff-Face, CosFace config)",
           extra={"randaugment_ops": 4, "randaugment_magnitude": 16}),
    Recipe("adaface", head="adaface", margin=0.4, h=0.333, epochs=26, milestones=(12, 20, 24),
           augment=("flip", "crop", "lowres", "photometric"), augment_p=0.2,
           source="AdaFace (mk-minchul/AdaFace, IR-50 config)"),
    Recipe("cpu-test", arch="tiny", head="arcface", scale=32.0, margin=0.5, lr=0.1, weight_decay=5e-4,
           batch_size=32, epochs=12, milestones=(10,), embedding_size=128, image_size=32, augment=("flip",),
           mixed_precision="no", source="facegen's CPU test recipe (not from a paper)"),
)}


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The recipe ``name`` with the non-None ``overrides`` applied (checked)."""
    if name not in RECIPES:
        raise InvalidArgumentError(f"unknown recipe '{name}'; choose one of: {', '.join(RECIPES)}")
    r = replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
    from facegen.id.iresnet import check_arch  # noqa: PLC0415

    check_arch(r.arch)
    if r.head not in HEADS:
        raise InvalidArgumentError(f"unknown head '{r.head}'; choose one of: {', '.join(HEADS)}")
    unknown = [a for a in r.augment if a not in AUGMENTATIONS]
    if unknown:
        raise InvalidArgumentError(f"unknown augmentation {unknown[0]!r}; choose from: {', '.join(AUGMENTATIONS)}")
    if r.image_size % 16 or not 16 <= r.image_size <= 224:
        raise InvalidArgumentError(f"image size {r.image_size} must be a multiple of 16 in 16..224")
    if r.batch_size < 2 or r.epochs < 1 or not r.lr > 0:
        raise InvalidArgumentError("batch size must be ≥ 2, epochs ≥ 1 and the learning rate > 0")
    return r
