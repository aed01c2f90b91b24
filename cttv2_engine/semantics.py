"""Checks of a validated JobSpec that need no torch and no files (the API runs them at submit).

The pydantic models already range-check every field, reject unknown fields, check the arch /
image-size tiling and which knobs a device family takes; this adds the cross-field checks
that depend on the dataset's known classes.
"""

from __future__ import annotations

from typing import Any

from cttv2_engine import registry
from cttv2_engine.errors import SpecError
from cttv2_engine.spec import JobSpec

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
KNOWN_CLASSES: dict[str, tuple[str, ...]] = {
    "digits": tuple(str(i) for i in range(10)),
    "cifar10": CIFAR10_CLASSES,
    "cifar100": CIFAR100_CLASSES,
}


def validate_spec_semantics(spec: JobSpec | dict[str, Any]) -> JobSpec:
    """Validate (if given a dict) and run the cross-field checks. Raises SpecError (a
    ValueError) naming the field; returns the JobSpec."""
    if not isinstance(spec, JobSpec):
        spec = JobSpec.model_validate(spec)
    try:
        registry.check_model(spec.model.arch, spec.model.img_size)
    except ValueError as exc:
        raise SpecError(str(exc), field="model.img_size") from None

    names = KNOWN_CLASSES.get(spec.data.dataset)
    if names is not None:
        if spec.data.num_classes is not None and spec.data.num_classes > len(names):
            raise SpecError(
                f"{spec.data.dataset} has {len(names)} classes, not {spec.data.num_classes}",
                field="data.num_classes",
            )
        seen: set[int] = set()
        for item in spec.data.classes or []:
            if isinstance(item, int):
                if item >= len(names):
                    raise SpecError(
                        f"class index {item} is out of range ({spec.data.dataset} has "
                        f"{len(names)} classes)",
                        field="data.classes",
                    )
                idx = item
            elif item in names:
                idx = names.index(item)
            else:
                raise SpecError(f"{spec.data.dataset} has no class {item!r}", field="data.classes")
            if idx in seen:
                raise SpecError(f"class {item!r} is listed twice", field="data.classes")
            seen.add(idx)
        if spec.data.classes is not None and len(seen) < 2:
            raise SpecError("choose at least 2 classes", field="data.classes")
    elif spec.data.classes is not None and len(spec.data.classes) < 2:
        raise SpecError("choose at least 2 classes", field="data.classes")
    return spec
