"""DatasetSpec: everything that defines a synthetic face dataset, as a dataclass and YAML.

Fields split in two: those that decide the pixels and the layout (model, counts, seed,
sampling, variation, filters, format, shard size, generator options) enter the
:meth:`DatasetSpec.fingerprint`; runtime choices (output folder, engine, workers, batch
size, models folder) do not, so a dataset resumed with more workers or another engine is
the same dataset (a batched GPU generator's pixels follow the batch size only up to float
rounding; see :mod:`facegen.dataset.generate`).

The bounds and number checks live in :mod:`facegen.dataset.spec_checks`, the safe reader of
spec files in :mod:`facegen.dataset.spec_yaml` (their names stay importable from here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facegen.choices import SEED
from facegen.dataset.spec_checks import (
    check_generator_options, check_number, dataset_limits, format_bound)
from facegen.dataset.spec_yaml import load_spec_yaml
from facegen.errors import InvalidArgumentError
from facegen.paths import ModelAccess, sha256_of

logger = logging.getLogger(__name__)

FORMATS = ("webdataset", "imagefolder")
ENGINES = ("local", "accelerate", "ray")
SPEC_VERSION = 1
#: ``provenance:`` of a spec: watermark every image; sign the finished dataset (see
#: :mod:`facegen.provenance.seal`: per-image C2PA signatures are not reproducible)
DEFAULT_PROVENANCE = {"c2pa": True, "watermark": True}

#: fields that never change a pixel or a file name (left out of the fingerprint)
RUNTIME_FIELDS = frozenset({"out", "engine", "workers", "batch_size", "models_dir", "accept_license",
                            "allow_new_numerics"})
#: fields whose value is a file: the fingerprint uses the file's sha256, not its path
FILE_FIELDS = ("prior", "reject_near")
#: keys facegen adds to a dataset folder's spec.yaml besides the spec fields
STORED_EXTRAS = frozenset({"fingerprint", "spec_version", "facegen_version", "identities", "numerics"})


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
    allow_new_numerics: bool = False            # resume under other library versions / kernels (recorded)

    def access(self, device: str | None = None) -> ModelAccess:
        """The model access of this run (its runtime ``models_dir`` and ``accept_license``)."""
        return ModelAccess(self.models_dir, self.accept_license, device)

    def __post_init__(self) -> None:
        for name in ("out", *FILE_FIELDS, "models_dir"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        for name in ("noise_levels", "noise_shares", "prompts", "poses"):
            value = getattr(self, name)
            if value is None or isinstance(value, (list, tuple)):
                setattr(self, name, tuple(value or ()))     # anything else is named by validate()
        if self.generator is None or isinstance(self.generator, Mapping):
            self.generator = dict(self.generator or {})
        given = {} if self.provenance is None else self.provenance
        given = given if isinstance(given, dict) else {"invalid": given}
        self.provenance = {**DEFAULT_PROVENANCE, **given}

    # ------------------------------------------------------------------ checks
    def validate(self) -> DatasetSpec:
        """Raise InvalidArgumentError naming the first unusable value (a wrong type, a value out
        of range, a size over :func:`dataset_limits`); return self."""
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise InvalidArgumentError(msg)

        limits = dataset_limits()
        need(isinstance(self.out, str) and self.out.strip() != "" and "\x00" not in self.out,
             f"out must be a folder path (a non-empty string), got {self.out!r}")
        for name in ("model", "format", "engine"):
            need(isinstance(getattr(self, name), str), f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("filter_encoder", "prior", "reject_near", "models_dir"):
            value = getattr(self, name)
            need(value is None or (isinstance(value, str) and value != ""),
                 f"{name} must be a string (or left out), got {value!r}")
        for name in ("filters", "dedup"):
            need(getattr(self, name) is None or isinstance(getattr(self, name), bool),
                 f"{name} must be true or false (or left out), got {getattr(self, name)!r}")
        for name in ("crops", "accept_license"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("num_ids", "images_per_id", "shard_size", "workers", "batch_size", "max_attempts"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            check_number(name, value, 1, limits.get(name), integer=True)
        need(self.num_ids * self.images_per_id <= limits["images"],
             f"num_ids x images_per_id is {self.num_ids * self.images_per_id} images: at most "
             f"{format_bound(limits['images'])} in one dataset")
        check_number("seed", self.seed, SEED.lo, SEED.hi, integer=True)
        need(self.format in FORMATS, f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        need(self.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.embedding_dim is not None:
            check_number("embedding_dim", self.embedding_dim, 2, limits["embedding_dim"], integer=True)
        check_number("max_cosine", self.max_cosine, -1, 1, open_lo=True, open_hi=True)
        check_number("leakage_threshold", self.leakage_threshold, -1, 1, open_lo=True, open_hi=True)
        check_number("dedup_hash_distance", self.dedup_hash_distance, 0, 256, integer=True)
        check_number("dedup_similarity", self.dedup_similarity, -1, 1)
        if self.min_id_similarity is not None:
            check_number("min_id_similarity", self.min_id_similarity, -1, 1)
        if self.min_quality is not None:
            check_number("min_quality", self.min_quality)
        for name in ("noise_levels", "noise_shares", "prompts", "poses"):
            value = getattr(self, name)
            need(isinstance(value, tuple), f"{name} must be a list, got {value!r}")
            need(len(value) <= limits["list_items"],
                 f"{name} has {len(value)} entries: at most {format_bound(limits['list_items'])}")
        need(isinstance(self.generator, dict),
             f"generator must be a mapping of option: value, got {self.generator!r}")
        need(len(self.noise_levels) == len(self.noise_shares) and len(self.noise_levels) > 0,
             f"noise_levels {list(self.noise_levels)} and noise_shares {list(self.noise_shares)} "
             "must be non-empty lists of equal length")
        for v in self.noise_levels:
            check_number("each of noise_levels", v, 0)
        for v in self.noise_shares:
            check_number("each of noise_shares", v, 0, 1)
        need(math.isclose(sum(self.noise_shares), 1.0, abs_tol=1e-6),
             f"noise_shares must be >= 0 and sum to 1, got {list(self.noise_shares)}")
        need(all(isinstance(p, str) for p in self.prompts), "prompts must be strings")
        longest = max((len(p) for p in self.prompts), default=0)
        need(longest <= limits["prompt_chars"],
             f"a prompt has {longest} characters: at most {format_bound(limits['prompt_chars'])}")
        check_generator_options(self.generator, limits)
        try:
            json.dumps(list(self.poses), allow_nan=False)
            json.dumps(self.generator, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidArgumentError(f"poses and generator options must be JSON values "
                                       f"(finite numbers, strings, lists): {exc}") from None
        if self.poses:
            from facegen.faces.pose import pose_kps  # noqa: PLC0415 - imported only when poses are given

            for pose in self.poses:
                pose_kps(pose, 64, 64)                       # the one-line error of a malformed pose
        unknown = sorted(set(self.provenance) - set(DEFAULT_PROVENANCE))
        need(not unknown, f"provenance takes {', '.join(DEFAULT_PROVENANCE)} (true/false), got {unknown}")
        need(all(isinstance(v, bool) for v in self.provenance.values()),
             f"provenance values must be true or false, got {self.provenance}")
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
                from facegen.adapters.registry import refusal  # noqa: PLC0415

                raise InvalidArgumentError(refusal(spec.model, "takes no pose control (remove the poses from the "
                                                   "dataset spec)", lambda a: a.supports_control_kps))
        if preset is not None:
            from facegen.pipelines.generation import adapter_for  # noqa: PLC0415

            if not adapter_for(preset).vector_identities:
                from facegen.adapters.registry import refusal  # noqa: PLC0415

                raise InvalidArgumentError(refusal(spec.model, "cannot make dataset identities from sampled vectors "
                                                   "(its ID condition needs a photo's token states)",
                                                   lambda a: a.vector_identities))
        if spec.prompts and preset is not None:
            from facegen.pipelines.generation import adapter_for  # noqa: PLC0415

            if not adapter_for(preset).supports_prompt:
                raise InvalidArgumentError(f"model '{spec.model}' ({preset.family}) takes no text prompt; "
                                           "remove the prompts from the dataset spec")
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

            spec.filter_encoder = choose_judge(exclude=conditioning, access=spec.access())
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
        unknown = sorted(str(k) for k in set(data) - known - STORED_EXTRAS)
        if unknown:
            raise InvalidArgumentError(f"unknown dataset spec field(s): {', '.join(unknown)[:200]}")
        if data.get("out") is None:
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
            from facegen.io.atomic import atomic_write_bytes

            atomic_write_bytes(Path(path), text.encode("utf-8"))
        return text

    @classmethod
    def from_yaml(cls, path: str | Path, out: str | Path | None = None) -> DatasetSpec:
        """Read a spec; ``out`` fills the output folder when the file has none."""
        p = Path(path)
        data = load_spec_yaml(p)
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"{p} must hold a mapping of spec fields")
        if out is not None and data.get("out") is None:
            data["out"] = str(out)
        return cls.from_mapping(data)


def read_stored_fingerprint(path: str | Path) -> str | None:
    """The ``fingerprint`` recorded in a written ``spec.yaml``."""
    value = read_stored_extra(path, "fingerprint")
    return value if isinstance(value, str) else None


def read_stored_extra(path: str | Path, key: str) -> Any:
    """A value facegen recorded in a dataset folder's ``spec.yaml`` beside the spec (None if absent)."""
    data = load_spec_yaml(path)
    return data.get(key) if isinstance(data, dict) else None


def stored_numerics(path: str | Path) -> list[dict[str, Any]]:
    """The numerics (:func:`facegen.numerics.numerics_record` + device) recorded in a dataset's
    ``spec.yaml``, oldest first ([] when none)."""
    value = read_stored_extra(path, "numerics")
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _preset(name: str):
    from facegen.models.registry import find_preset  # noqa: PLC0415

    return find_preset(name)


#: images per generator call on a GPU by base architecture (batched across identities: SD1.5 at
#: 512² fits 32 in well under 80 GB with CFG; SDXL at 1024² costs ~4x more per image)
GPU_BATCH_SIZES = {"sd15": 32, "sdxl": 8}
CPU_BATCH_SIZE = 8


def default_batch_size(model: str, on_gpu: bool) -> int:
    """Images per generator call when the spec sets none: by base model on a GPU, 8 on the CPU
    (where each image is made alone anyway)."""
    preset = _preset(model) if on_gpu else None
    return GPU_BATCH_SIZES.get(preset.base, CPU_BATCH_SIZE) if preset is not None else CPU_BATCH_SIZE
