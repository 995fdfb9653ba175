"""DatasetSpec: everything that defines a synthetic face dataset, as a dataclass and YAML.

Fields split in two: those that decide the pixels and the layout (model, counts, seed,
sampling, variation, filters, format, shard size, generator options) enter the
:meth:`DatasetSpec.fingerprint`; runtime choices (output folder, engine, workers, batch
size, models folder) do not, so a dataset resumed with more workers or another engine is
the same dataset (a batched GPU generator's pixels follow the batch size only up to float
rounding; see :mod:`facegen.dataset.generate`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facegen.errors import InvalidArgumentError
from facegen.paths import sha256_of

logger = logging.getLogger(__name__)

FORMATS = ("webdataset", "imagefolder")
ENGINES = ("local", "accelerate", "ray")
SPEC_VERSION = 1
#: ``provenance:`` of a spec: watermark every image; sign the finished dataset (see
#: :mod:`facegen.provenance.seal`: per-image C2PA signatures are not reproducible)
DEFAULT_PROVENANCE = {"c2pa": True, "watermark": True}

#: fields that never change a pixel or a file name (left out of the fingerprint)
RUNTIME_FIELDS = frozenset({"out", "engine", "workers", "batch_size", "models_dir", "accept_license"})
#: fields whose value is a file: the fingerprint uses the file's sha256, not its path
FILE_FIELDS = ("prior", "reject_near")


@dataclass
class DatasetSpec:
    """A dataset to generate.  ``None`` in ``embedding_dim``, ``filters``, ``dedup`` and
    ``filter_encoder`` means "decided from the model preset" (see :meth:`resolved`): a tiny
    preset cannot draw faces, so its filters are off unless asked for."""

    out: str
    model: str = "tiny"
    num_ids: int = 8
    images_per_id: int = 4
    seed: int = 0
    format: str = "webdataset"
    shard_size: int = 100                       # identities per shard
    # identity sampling
    embedding_dim: int | None = None
    max_cosine: float = 0.4
    prior: str | None = None                    # .npy of real embeddings: PCA Gaussian prior
    reject_near: str | None = None              # .npy of real embeddings: leakage check
    leakage_threshold: float = 0.4
    # intra-class variation
    noise_levels: tuple[float, ...] = (0.3, 0.5, 0.7)
    noise_shares: tuple[float, ...] = (0.4, 0.4, 0.2)
    prompts: tuple[str, ...] = ()
    poses: tuple[Any, ...] = ()
    # filters (face found + ID consistency by an independent encoder; dedup; quality)
    filters: bool | None = None
    filter_encoder: str | None = None
    min_id_similarity: float | None = None
    dedup: bool | None = None
    dedup_hash_distance: int = 12             # of the 256-bit average hash
    dedup_similarity: float = 0.95
    min_quality: float | None = None
    max_attempts: int = 3
    crops: bool = False                         # also write 112x112 ArcFace-aligned crops
    generator: dict[str, Any] = field(default_factory=dict)  # options of the generator
    # provenance marks: the watermark in every image; c2pa = one signed seal (credentials.zip)
    provenance: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PROVENANCE))
    # runtime (not in the fingerprint)
    engine: str = "local"
    workers: int = 1
    batch_size: int | None = None               # None: default_batch_size() for the model and device
    models_dir: str | None = None
    accept_license: bool = False

    def __post_init__(self) -> None:
        self.out = str(self.out)
        for name in ("noise_levels", "noise_shares", "prompts", "poses"):
            setattr(self, name, tuple(getattr(self, name) or ()))
        self.generator = dict(self.generator or {})
        given = self.provenance if isinstance(self.provenance, dict) else {"invalid": self.provenance}
        self.provenance = {**DEFAULT_PROVENANCE, **given}

    # ------------------------------------------------------------------ checks
    def validate(self) -> DatasetSpec:
        """Raise InvalidArgumentError naming the first unusable value; return self."""
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise InvalidArgumentError(msg)

        for name in ("num_ids", "images_per_id", "shard_size", "workers", "batch_size", "max_attempts"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be an integer >= 1, got {value!r}")
        need(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
             f"seed must be an integer >= 0, got {self.seed!r}")
        need(self.format in FORMATS, f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        need(self.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        need(self.embedding_dim is None or (isinstance(self.embedding_dim, int) and self.embedding_dim >= 2),
             f"embedding_dim must be an integer >= 2, got {self.embedding_dim!r}")
        need(-1 < self.max_cosine < 1, f"max_cosine must be in (-1, 1), got {self.max_cosine}")
        need(-1 < self.leakage_threshold < 1, f"leakage_threshold must be in (-1, 1), got {self.leakage_threshold}")
        need(len(self.noise_levels) == len(self.noise_shares) and len(self.noise_levels) > 0,
             f"noise_levels {list(self.noise_levels)} and noise_shares {list(self.noise_shares)} "
             "must be non-empty lists of equal length")
        need(all(v >= 0 for v in self.noise_levels), f"noise_levels must be >= 0, got {list(self.noise_levels)}")
        need(all(v >= 0 for v in self.noise_shares) and math.isclose(sum(self.noise_shares), 1.0, abs_tol=1e-6),
             f"noise_shares must be >= 0 and sum to 1, got {list(self.noise_shares)}")
        need(all(isinstance(p, str) for p in self.prompts), "prompts must be strings")
        try:
            json.dumps(list(self.poses))
            json.dumps(self.generator, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"poses and generator options must be JSON values: {exc}") from None
        if self.poses:
            from facegen.adapters.instantid import pose_kps  # noqa: PLC0415 - imported only when poses are given

            for pose in self.poses:
                pose_kps(pose, 64, 64)                       # the one-line error of a malformed pose
        unknown = sorted(set(self.provenance) - set(DEFAULT_PROVENANCE))
        need(not unknown, f"provenance takes {', '.join(DEFAULT_PROVENANCE)} (true/false), got {unknown}")
        need(all(isinstance(v, bool) for v in self.provenance.values()),
             f"provenance values must be true or false, got {self.provenance}")
        need(0 <= self.dedup_hash_distance <= 256, f"dedup_hash_distance must be in 0..256, got {self.dedup_hash_distance}")
        for name in FILE_FIELDS:
            path = getattr(self, name)
            need(path is None or Path(path).is_file(), f"{name}: file not found: {path}")
        return self

    # ------------------------------------------------------------------ resolution
    def resolved(self, stored: DatasetSpec | None = None) -> DatasetSpec:
        """A copy with the preset-dependent ``None`` fields filled in.

        Values already decided in ``stored`` (the spec of a run being resumed) win, so a
        resume does not change its mind because, say, another judge model got installed.
        """
        spec = dataclasses.replace(self)
        for name in ("embedding_dim", "filters", "filter_encoder", "dedup"):
            if getattr(spec, name) is None and stored is not None and getattr(stored, name) is not None:
                setattr(spec, name, getattr(stored, name))
        preset = _preset(spec.model)
        if spec.embedding_dim is None:
            spec.embedding_dim = preset.id_dim if preset is not None else None
            if spec.embedding_dim is None:
                raise InvalidArgumentError(
                    f"model '{spec.model}' is not a registered preset: give embedding_dim explicitly")
        if spec.poses and preset is not None:
            from facegen.pipelines.generation import adapter_for  # noqa: PLC0415

            if not adapter_for(preset).supports_control_kps:
                raise InvalidArgumentError(f"model '{spec.model}' takes no pose control (InstantID presets do); "
                                           "remove the poses from the dataset spec")
        tiny = preset is not None and preset.tiny
        if spec.filters is None:
            spec.filters = not tiny
        if spec.dedup is None:
            spec.dedup = not tiny
        conditioning = preset.encoder if preset is not None else None
        if spec.filters and self.filter_encoder is not None and self.filter_encoder == conditioning:
            raise InvalidArgumentError(
                f"filter_encoder '{self.filter_encoder}' conditioned the generation of '{spec.model}': "
                "the ID filter needs an independent encoder (leave it unset to pick one)")
        if spec.filters and spec.filter_encoder is None:
            from facegen.metrics import choose_judge

            spec.filter_encoder = choose_judge(exclude=conditioning, models_dir=spec.models_dir,
                                               accept_license=spec.accept_license)
            if spec.filter_encoder == conditioning:
                logger.warning("no encoder independent of '%s' is installed: the ID filter judges with the "
                               "conditioning encoder itself", conditioning)
        return spec.validate()

    def conditioning_encoder(self) -> str | None:
        preset = _preset(self.model)
        return preset.encoder if preset is not None else None

    def is_tiny(self) -> bool:
        preset = _preset(self.model)
        return bool(preset is not None and preset.tiny)

    @property
    def num_shards(self) -> int:
        return -(-self.num_ids // self.shard_size)

    def shard_identities(self, shard: int) -> range:
        start = shard * self.shard_size
        return range(start, min(self.num_ids, start + self.shard_size))

    # ------------------------------------------------------------------ fingerprint
    def pixel_fields(self) -> dict[str, Any]:
        """The fields that decide the dataset's content, files replaced by their sha256."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in RUNTIME_FIELDS:
                continue
            value = getattr(self, f.name)
            if f.name in FILE_FIELDS and value is not None:
                value = {"sha256": sha256_of(value)}
            out[f.name] = _plain(value)
        return out

    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of :meth:`pixel_fields`."""
        payload = json.dumps({"version": SPEC_VERSION, **self.pixel_fields()}, sort_keys=True,
                             separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def differences(self, other: DatasetSpec) -> list[str]:
        """Names of the pixel fields that differ from ``other``."""
        mine, theirs = self.pixel_fields(), other.pixel_fields()
        return sorted(k for k in mine if mine[k] != theirs.get(k))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DatasetSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {"fingerprint", "spec_version", "facegen_version"}
        unknown = sorted(set(data) - known - extra)
        if unknown:
            raise InvalidArgumentError(f"unknown dataset spec field(s): {', '.join(unknown)}")
        if "out" not in data:
            raise InvalidArgumentError("the dataset spec needs 'out' (the output folder)")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_yaml(self, path: str | Path | None = None, extra: Mapping[str, Any] | None = None,
                runtime: bool = True) -> str:
        """YAML text (written atomically to ``path`` if given); ``runtime=False`` leaves out
        the runtime fields, as in a dataset folder's ``spec.yaml``."""
        data = {k: v for k, v in self.to_dict().items() if runtime or k not in RUNTIME_FIELDS}
        data.update(dict(extra) if extra else {})
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
        if path is not None:
            from facegen.dataset.writers import atomic_write_bytes

            atomic_write_bytes(Path(path), text.encode("utf-8"))
        return text

    @classmethod
    def from_yaml(cls, path: str | Path, out: str | Path | None = None) -> DatasetSpec:
        """Read a spec; ``out`` fills the output folder when the file has none."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidArgumentError(f"dataset spec not found: {p}") from None
        except yaml.YAMLError as exc:
            raise InvalidArgumentError(f"{p} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"{p} must hold a mapping of spec fields")
        if out is not None and data.get("out") is None:
            data["out"] = str(out)
        return cls.from_mapping(data)


def read_stored_fingerprint(path: str | Path) -> str | None:
    """The ``fingerprint`` recorded in a written ``spec.yaml``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return data.get("fingerprint") if isinstance(data, dict) else None


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _preset(name: str):
    try:
        from facegen.models.registry import PRESETS
    except ImportError:  # pragma: no cover - registry is part of the package
        return None
    return PRESETS.get(name)


# ---------------------------------------------------------------------- command line
def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    """The ``facegen dataset`` options (``--spec FILE`` or the flags; flags override)."""
    p.add_argument("--spec", default=None, help="a dataset spec YAML (flags given override it)")
    p.add_argument("--model", default=None, help="generation preset (default tiny)")
    p.add_argument("--num-ids", type=int, default=None, help="number of synthetic identities")
    p.add_argument("--images-per-id", type=int, default=None, help="images per identity")
    p.add_argument("--seed", type=int, default=None, help="run seed (every image's seed derives from it)")
    p.add_argument("--format", choices=FORMATS, default=None, help="webdataset .tar shards or ImageFolder")
    p.add_argument("--out", default=None, help="output folder (resumable: rerun the same command)")
    p.add_argument("--shard-size", type=int, default=None, help="identities per shard (default 100)")
    p.add_argument("--max-cosine", type=float, default=None, help="max cosine between identities (0.4)")
    p.add_argument("--prior", default=None, help=".npy of real embeddings to fit a PCA Gaussian prior on")
    p.add_argument("--reject-near", default=None, help=".npy of real embeddings identities must stay away from")
    p.add_argument("--filters", choices=("on", "off"), default=None,
                   help="face + ID-consistency filters (default: on, off for tiny presets)")
    p.add_argument("--filter-encoder", default=None, help="independent encoder of the ID filter")
    p.add_argument("--max-attempts", type=int, default=None, help="tries per image before it is dropped (3)")
    p.add_argument("--crops", action="store_true", default=None, help="also write 112x112 aligned crops")
    p.add_argument("--engine", choices=ENGINES, default=None, help="local (default), accelerate or ray")
    p.add_argument("--workers", type=int, default=None, help="worker processes (local, ray)")
    p.add_argument("--batch-size", type=int, default=None, help="images per generator call (GPU: one diffusers call, default 32 for SD1.5 / 8 for SDXL; CPU: 8, pixels unaffected)")


_ARG_FIELDS = ("model", "num_ids", "images_per_id", "seed", "format", "out", "shard_size", "max_cosine",
               "prior", "reject_near", "filter_encoder", "max_attempts", "crops", "engine", "workers",
               "batch_size", "models_dir", "accept_license")


#: images per generator call on a GPU by base architecture (batched across identities: SD1.5 at
#: 512² fits 32 in well under 80 GB with CFG; SDXL at 1024² costs ~4x more per image)
GPU_BATCH_SIZES = {"sd15": 32, "sdxl": 8}
CPU_BATCH_SIZE = 8


def default_batch_size(model: str, on_gpu: bool) -> int:
    """Images per generator call when the spec sets none: by base model on a GPU, 8 on the CPU
    (where each image is made alone anyway)."""
    preset = _preset(model) if on_gpu else None
    return GPU_BATCH_SIZES.get(preset.base, CPU_BATCH_SIZE) if preset is not None else CPU_BATCH_SIZE


def spec_from_args(args: argparse.Namespace) -> DatasetSpec:
    """A spec from ``--spec`` (if any) overridden by the flags given."""
    data: dict[str, Any] = {}
    if getattr(args, "spec", None):
        data = DatasetSpec.from_yaml(args.spec, out=getattr(args, "out", None)).to_dict()
    for name in _ARG_FIELDS:
        value = getattr(args, name, None)
        if value is not None and not (name == "accept_license" and value is False):
            data[name] = value
    if getattr(args, "filters", None) is not None:
        data["filters"] = args.filters == "on"
    if "out" not in data:
        raise InvalidArgumentError("give the output folder with --out (or 'out' in the spec file)")
    return DatasetSpec.from_mapping(data)
