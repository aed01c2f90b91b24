"""Checks of a validated JobSpec that need no torch and no files (the API runs them at submit).

The pydantic models already range-check every field, reject unknown fields, check the arch /
image-size tiling and which knobs a device family takes; this adds the cross-field checks
that depend on the dataset's known classes.
"""

from __future__ import annotations

from typing import Any

from cttv2_engine.errors import EngineError, SpecError
from cttv2_engine.spec import DataSpec, JobSpec

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
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
    # The arch / image-size tiling is not checked again here: ModelSpec's validator did.
    names = KNOWN_CLASSES.get(spec.data.dataset)
    if names is not None:
        select_classes(list(names), spec.data, error=SpecError)
    elif spec.data.classes is not None and len(spec.data.classes) < 2:
        raise SpecError("choose at least 2 classes", field="data.classes")
    return spec


def select_classes(names: list[str], data: DataSpec, error: type[EngineError] = SpecError) -> list[int]:
    """Indices into ``names`` in the order the new labels 0..K-1 take: the first
    ``num_classes``, the listed ``classes`` (names or indices), or all. The API checks a
    dataset whose class names are known at submit (error=SpecError); the loader checks every
    dataset once its names are read (error=DataError)."""
    if data.num_classes is not None:
        if data.num_classes > len(names):
            raise error(
                f"asks for {data.num_classes} classes; {data.dataset} has {len(names)}", field="data.num_classes"
            )
        return list(range(data.num_classes))
    if data.classes is None:
        return list(range(len(names)))
    chosen: list[int] = []
    for item in data.classes:
        if isinstance(item, int):
            if item >= len(names):
                raise error(
                    f"class index {item} is out of range ({data.dataset} has {len(names)} classes)",
                    field="data.classes",
                )
            idx = item
        elif item in names:
            idx = names.index(item)
        else:
            shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
            raise error(f"{data.dataset} has no class {item!r}; known: {shown}", field="data.classes")
        if idx in chosen:
            raise error(f"class {item!r} is listed twice", field="data.classes")
        chosen.append(idx)
    if len(chosen) < 2:
        raise error("choose at least 2 classes", field="data.classes")
    return chosen


# A checkpoint may continue under a spec that differs only here: "train further" asks for more
# epochs (the lr schedule then spans the new length, from the step reached).
RESUMABLE_CHANGES = ("name", "training.epochs", "training.eval_every")


def resume_differences(checkpoint_spec: JobSpec | dict[str, Any], spec: JobSpec | dict[str, Any]) -> list[str]:
    """Dotted paths where `spec` differs from the spec a checkpoint was written for, other
    than RESUMABLE_CHANGES. Empty: the checkpoint can be resumed under `spec`."""
    old = _as_dict(checkpoint_spec)
    new = _as_dict(spec)
    return [path for path in _diff(old, new, "") if path not in RESUMABLE_CHANGES]


def _as_dict(spec: JobSpec | dict[str, Any]) -> dict[str, Any]:
    if not isinstance(spec, JobSpec):
        spec = JobSpec.model_validate(spec)
    return spec.model_dump(mode="json")


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [prefix or "spec"]
