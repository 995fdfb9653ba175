"""The option groups the ``facegen`` commands share, each declared once here.

A command module builds its parser from these (``add_model_options(p)``, ``add_device_options(p)``
...) and adds only what is its own, so a shared flag has one spelling, one type and one help
text everywhere. The argparse ``type``s check numbers before any work: finite, bounded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from facegen import limits
from facegen.choices import DTYPE, SEED
from facegen.errors import InvalidArgumentError
from facegen.paths import ModelAccess



# ---------------------------------------------------------------------- argparse types
def finite_float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
                 ) -> Callable[[str], float]:
    """An argparse ``type``: a finite float within [lo, hi] (``inf``/``nan`` refused)."""
    def parse(text: str) -> float:
        try:
            return limits.finite("value", text, lo, hi, lo_open=lo_open)
        except InvalidArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("value must", "must")) from None
    parse.__name__ = "finite number"
    return parse


def bounded_int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer within [lo, hi]."""
    def parse(text: str) -> int:
        try:
            return limits.integer("value", text, lo, hi)
        except InvalidArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("value must", "must")) from None
    parse.__name__ = "integer"
    return parse


# ---------------------------------------------------------------------- option groups
def add_models_options(p: argparse.ArgumentParser, licence_of: str = "the weights and encoders used") -> None:
    """``--models-dir`` and ``--accept-license``: where weights are read from, and the explicit
    acceptance of non-commercial licences (never given on the user's behalf)."""
    p.add_argument("--models-dir", default=None, metavar="DIR",
                   help="local weights folder in the hub layout (default: $FACEGEN_HOME/models, "
                        "~/.cache/facegen/models)")
    p.add_argument("--accept-license", action="store_true",
                   help=f"accept the non-commercial licences of {licence_of} (see 'facegen models')")


def access_from_args(args: argparse.Namespace) -> ModelAccess:
    """The command's model access, built once from ``--models-dir``, ``--accept-license`` and ``--device``
    (those the command declares) and passed down to everything that loads a model."""
    return ModelAccess(getattr(args, "models_dir", None), getattr(args, "accept_license", False),
                       getattr(args, "device", None))


def add_device_options(p: argparse.ArgumentParser, dtype: bool = True) -> None:
    """``--device`` (and ``--dtype``)."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    if dtype:
        p.add_argument("--dtype", default=None, choices=DTYPE.values)


def add_seed_option(p: argparse.ArgumentParser, help: str, default: int | None = None) -> None:
    p.add_argument("--seed", type=bounded_int(int(SEED.lo), int(SEED.hi)), default=default, help=help)


def add_sampling_options(p: argparse.ArgumentParser, *, seed_help: str,
                         max_guidance: float | None = limits.MAX_GUIDANCE,
                         steps_limit: str = f"at most ${limits.MAX_STEPS_ENV}, default {limits.DEFAULT_MAX_STEPS}"
                         ) -> None:
    """``--seed``, ``--steps``, ``--guidance`` (unset: the preset's defaults). ``max_guidance``
    None leaves the upper bound to the command's own limits (a dataset spec's)."""
    add_seed_option(p, seed_help)
    p.add_argument("--steps", type=bounded_int(1), default=None,
                   help=f"denoising steps (default: the preset's; {steps_limit})")
    p.add_argument("--guidance", type=finite_float(0, max_guidance), default=None,
                   help="classifier-free guidance scale (default: the preset's)")


def add_model_option(p: argparse.ArgumentParser, *, offline: str = "tiny", required: bool = True) -> None:
    """``--model/-m PRESET`` of a command that loads one generation preset."""
    from facegen.models.registry import list_presets  # noqa: PLC0415

    p.add_argument("--model", "-m", required=required, default=None, choices=list_presets(), metavar="PRESET",
                   help=f"model preset ({offline} runs offline): {', '.join(list_presets())}")


def add_output_option(p: argparse.ArgumentParser, metavar: str, help: str, required: bool = True) -> None:
    p.add_argument("--out", "-o", required=required, default=None, metavar=metavar, help=help)


def add_overwrite_option(p: argparse.ArgumentParser, what: str) -> Any:
    return p.add_argument("--overwrite", action="store_true",
                          help=f"replace {what} (never an input photo)")


def add_prompt_option(p: argparse.ArgumentParser) -> None:
    """``--prompt TEXT`` (presets that take text)."""
    p.add_argument("--prompt", default=None, help="text prompt (for presets that take text; 'facegen models' says which)")


def add_adapter_scale_option(p: argparse.ArgumentParser) -> None:
    """``--adapter-scale X``: the ID adapter's strength, the preset's default when not given."""
    p.add_argument("--adapter-scale", type=finite_float(0, 5), default=None,
                   help="ID adapter strength (presets with an adapter scale)")


def add_workers_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--workers N``: worker processes (at least 1)."""
    p.add_argument("--workers", type=bounded_int(1), default=None, help=help)


def add_no_plots_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--no-plots``: skip the PNG plots (no matplotlib needed)."""
    p.add_argument("--no-plots", action="store_true", help=help)


def add_json_option(p: argparse.ArgumentParser, help: str = "print JSON") -> None:
    """``--json``: machine-readable output instead of the text."""
    p.add_argument("--json", action="store_true", help=help)


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def encoder_name(text: str) -> str:
    """An argparse ``type``: a registered ID encoder's name, or a trained run's folder
    (``facegen fr-train``'s output), given back as the name its embeddings record."""
    from facegen.id.registry import get_encoder_spec  # noqa: PLC0415

    try:
        return get_encoder_spec(text).name
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_encoder_option(p: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """``--encoder NAME|RUN_DIR``: a registered ID encoder, or a trained run's folder."""
    from facegen.id.registry import ENCODERS  # noqa: PLC0415

    p.add_argument("--encoder", default=default, type=encoder_name, metavar="NAME|RUN_DIR",
                   help=f"{help}; one of {', '.join(sorted(ENCODERS))}, or a run folder of 'facegen fr-train'")


def add_provenance_options(p: argparse.ArgumentParser) -> None:
    """The provenance switches of a command that writes images."""
    g = p.add_argument_group("provenance (C2PA Content Credentials and invisible watermark; both on by default)")
    g.add_argument("--no-watermark", action="store_true",
                   help="do not embed the invisible watermark (a warning says what is lost)")
    g.add_argument("--no-c2pa", action="store_true",
                   help="do not sign a C2PA manifest into the files (a warning says what is lost)")
    g.add_argument("--c2pa-cert", default=None, metavar="PEM",
                   help="certificate chain to sign with (default: $FACEGEN_C2PA_CERT, else this "
                        "installation's self-signed certificate in $FACEGEN_HOME/c2pa)")
    g.add_argument("--c2pa-key", default=None, metavar="PEM", help="its private key ($FACEGEN_C2PA_KEY)")


def provenance_from_args(args: argparse.Namespace) -> Any:
    """The resolved :class:`facegen.provenance.Provenance` (a bad certificate fails here, before
    any model is loaded)."""
    from facegen.provenance import provenance_options  # noqa: PLC0415

    return provenance_options(watermark=not getattr(args, "no_watermark", False),
                              c2pa=not getattr(args, "no_c2pa", False),
                              cert=getattr(args, "c2pa_cert", None), key=getattr(args, "c2pa_key", None),
                              device=getattr(args, "device", None))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def expand_id_paths(paths: list[str]) -> list[Path]:
    """``--id`` values: files, or folders whose photos (sorted) are all references of one person."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            photos = sorted(x for x in p.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES)
            if not photos:
                raise InvalidArgumentError(f"--id {p}: the folder holds no photos")
            out.extend(photos)
        else:
            out.append(p)
    return out
