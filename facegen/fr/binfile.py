"""insightface verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin)
read without executing anything.

The format (insightface ``recognition/arcface_torch/eval/verification.py``): a pickle of a
2-tuple ``(bins, issame)``: ``bins`` a list of JPEG/PNG-encoded images, two per pair in pair
order, ``issame`` a list of one bool per pair.  The images are aligned 112×112 ArcFace crops.

A pickle can run any code it names, so the reader is a restricted unpickler that builds only
the containers of that format and resolves **no** global but the two byte constructors older
pickles use (``_codecs.encode`` for Python-3 ``bytes`` at protocol 2, ``bytearray``): a file
naming anything else (``os.system``, ``builtins.eval`` …) is refused before anything is called.
The images are decoded with Pillow (no mxnet).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

from facegen.errors import InvalidArgumentError

#: the only globals a verification .bin may name (byte constructors of protocol-2 pickles)
_ALLOWED_GLOBALS = {("_codecs", "encode"), ("builtins", "bytearray"), ("__builtin__", "bytearray")}


class BinFormatError(InvalidArgumentError):
    """A ``.bin`` that is not an insightface verification file (or tries to run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise BinFormatError(f"names '{module}.{name}', which a verification .bin never does: refused "
                             "(nothing was run)")

    def persistent_load(self, pid):  # noqa: ANN001, ANN201
        raise BinFormatError("uses persistent ids, which a verification .bin never does: refused")


def read_bin(path: str | Path) -> tuple[list[bytes], list[bool]]:
    """``(images, issame)`` of a verification ``.bin``: ``2 × len(issame)`` encoded images."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"{p}: no such file" if not p.exists() else f"{p} is not a file")
    try:
        with p.open("rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="bytes").load()
    except BinFormatError as exc:
        raise BinFormatError(f"{p} {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, UnicodeDecodeError) as exc:
        raise BinFormatError(f"{p} is not an insightface verification .bin (not a readable pickle: "
                             f"{type(exc).__name__})") from None
    return _check_shape(p, obj)


def _check_shape(p: Path, obj: object) -> tuple[list[bytes], list[bool]]:
    what = f"{p} is not an insightface verification .bin"
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise BinFormatError(f"{what} (expected a pair (images, issame), got {type(obj).__name__})")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise BinFormatError(f"{what} (expected two lists, got {type(bins).__name__}, {type(issame).__name__})")
    if not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise BinFormatError(f"{what} (its images are not encoded bytes)")
    if not all(isinstance(s, (bool, int)) and s in (0, 1) for s in issame):
        raise BinFormatError(f"{what} (its labels are not booleans)")
    if not issame or len(bins) != 2 * len(issame):
        raise BinFormatError(f"{what} ({len(bins)} images for {len(issame)} pairs; expected two per pair)")
    return [bytes(b) for b in bins], [bool(s) for s in issame]


def write_bin(path: str | Path, images: Sequence[bytes], issame: Sequence[bool]) -> Path:
    """Write a verification ``.bin`` (atomically) from encoded images, two per pair."""
    from facegen.io.atomic import atomic_write_bytes  # noqa: PLC0415

    p = Path(path)
    _check_shape(p, (list(images), list(issame)))
    data = pickle.dumps(([bytes(b) for b in images], [bool(s) for s in issame]), protocol=4)
    return atomic_write_bytes(p, data)


def decode_images(images: Sequence[bytes], where: str) -> list:
    """RGB uint8 arrays of encoded images, through facegen's one image door (Pillow, no mxnet)."""
    from facegen.errors import BadImageError  # noqa: PLC0415
    from facegen.io.images import load_image  # noqa: PLC0415

    out = []
    for i, data in enumerate(images):
        try:
            out.append(load_image(data))
        except BadImageError as exc:
            raise BinFormatError(f"{where}: image {i} cannot be decoded ({exc})") from None
    return out
