"""The AI-generated marks in an image file's metadata: building them, and reading them back.

PNG: text chunks ``ai_generated``, ``Software``, ``DigitalSourceType`` (IPTC) and ``facegen``
(JSON of the caller's metadata; each str/number/bool value also as its own chunk), plus an XMP
packet. JPEG/WebP: EXIF (Software, ImageDescription, UserComment) and XMP.
:func:`read_metadata` reads any image's marks without decoding its pixels.
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping
from xml.sax.saxutils import escape as _xml_escape

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from facegen.errors import BadImageError, FacegenError, InvalidArgumentError
from facegen.io.files import Opt, parse_json
from facegen.io.guard import bomb_guard
from facegen.io.images import HEAD_BYTES, explain_unidentified, pillow_warnings_logged, open_regular
from facegen.limits import json_safe

logger = logging.getLogger(__name__)

#: IPTC digital source type of images made by a trained generative model.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_AI_SOURCE_TYPES = frozenset({
    DIGITAL_SOURCE_TYPE,
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
})

# Keys the provenance block owns; metadata may not set them (case-insensitive).
_RESERVED_KEYS = frozenset({"ai_generated", "software", "digitalsourcetype", "facegen",
                            "xml:com.adobe.xmp", "provenance"})
_MAX_PNG_METADATA_BYTES = 512 * 1024  # Pillow refuses to read text chunks over 1 MiB
_ZIP_TEXT_OVER = 2048

_EXIF_IFD = 0x8769
_TAG_IMAGE_DESCRIPTION = 0x010E
_TAG_SOFTWARE = 0x0131
_TAG_USER_COMMENT = 0x9286

_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "facegen": "urn:facegen:xmp:1.0/",
}


# --------------------------------------------------------------------------- write


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(
            f"metadata must be a mapping of str keys, got {type(metadata).__name__}")
    meta = json_safe(dict(metadata))  # NaN/inf become null: the metadata is strict JSON
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"metadata keys must be non-empty strings, got {key!r}")
        if key.lower() in _RESERVED_KEYS:
            raise InvalidArgumentError(
                f"metadata key {key!r} is reserved for the provenance fields save_image writes")
        try:
            json.dumps(value, default=json_default)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"metadata[{key!r}] is not JSON-serialisable ({type(value).__name__}): {exc}"
            ) from None
    return meta


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _simple_text(value: Any) -> str | None:
    """The text of a value that gets its own chunk (str, bool, int, float), else None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def _valid_png_keyword(key: str) -> bool:
    # PNG keywords: 1-79 Latin-1 printable characters, no leading/trailing/double spaces.
    if not 1 <= len(key) <= 79 or key != key.strip() or "  " in key:
        return False
    return all(32 <= ord(c) <= 126 or 161 <= ord(c) <= 255 for c in key)


def _png_info(meta: Mapping[str, Any], software: str, payload: str, xmp: str
              ) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("ai_generated", "true")
    info.add_text("Software", software)
    info.add_text("DigitalSourceType", DIGITAL_SOURCE_TYPE)
    info.add_text("facegen", payload, zip=len(payload) > _ZIP_TEXT_OVER)
    for key, value in meta.items():
        text = _simple_text(value)
        if text is None:
            continue
        if not _valid_png_keyword(key):
            logger.debug("metadata key %r is not a valid PNG keyword; kept in the JSON only",
                         key)
            continue
        info.add_text(key, text, zip=len(text) > _ZIP_TEXT_OVER)
    info.add_itxt("XML:com.adobe.xmp", xmp)
    return info


def png_options(meta: dict[str, Any], payload: str, software: str, xmp: str) -> Any:
    if len(payload.encode("utf-8")) > _MAX_PNG_METADATA_BYTES:
        raise InvalidArgumentError(
            f"metadata is too large ({len(payload):,} characters of JSON; the limit is "
            f"{_MAX_PNG_METADATA_BYTES:,} bytes): store large data next to the image")
    return _png_info(meta, software, payload, xmp)


def exif_bytes(software: str, payload: str) -> bytes:
    exif = Image.Exif()
    exif[_TAG_SOFTWARE] = software
    exif[_TAG_IMAGE_DESCRIPTION] = (
        f"AI-generated image ({DIGITAL_SOURCE_TYPE.rsplit('/', 1)[-1]}) made with {software}")
    ascii_payload = json.dumps(json.loads(payload), ensure_ascii=True, sort_keys=True)
    exif.get_ifd(_EXIF_IFD)[_TAG_USER_COMMENT] = b"ASCII\x00\x00\x00" + ascii_payload.encode()
    return exif.tobytes()


def build_xmp(software: str, payload: str) -> str:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{_NS["x"]}">\n'
        f' <rdf:RDF xmlns:rdf="{_NS["rdf"]}">\n'
        '  <rdf:Description rdf:about=""'
        f' xmlns:Iptc4xmpExt="{_NS["Iptc4xmpExt"]}"'
        f' xmlns:xmp="{_NS["xmp"]}" xmlns:facegen="{_NS["facegen"]}">\n'
        f'   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}'
        '</Iptc4xmpExt:DigitalSourceType>\n'
        f'   <xmp:CreatorTool>{_xml_escape(software)}</xmp:CreatorTool>\n'
        '   <facegen:ai_generated>true</facegen:ai_generated>\n'
        f'   <facegen:metadata>{_xml_escape(payload)}</facegen:metadata>\n'
        '  </rdf:Description>\n'
        ' </rdf:RDF>\n'
        '</x:xmpmeta>\n'
        '<?xpacket end="w"?>'
    )


# --------------------------------------------------------------------------- read back


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the provenance metadata of an image file without decoding its pixels.

    Returns a dict with:
        ``format`` (Pillow format name); ``ai_generated`` (True when marked so by facegen
        or by an IPTC AI digital source type); ``software``; ``digital_source_type``;
        ``metadata`` (the dict given to :func:`save_image`, ``{}`` if none); ``text`` (every
        raw text field found: PNG text chunks, or EXIF Software/ImageDescription/UserComment).

    Works on any readable image, not only facegen's. PNG text placed after the pixel data
    is not read. Raises :class:`BadImageError` when the file cannot be opened as an image.
    """
    path = Path(path)
    name = str(path)
    fh = open_regular(path)
    with fh, bomb_guard(None, name), pillow_warnings_logged(name):
        head = fh.read(HEAD_BYTES)
        fh.seek(0)
        if not head:
            raise BadImageError(f"{name}: empty file (0 bytes)")
        try:
            im = Image.open(fh)
        except UnidentifiedImageError:
            raise BadImageError(explain_unidentified(head, path.suffix.lower(), name)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as exc:  # noqa: BLE001
            raise BadImageError(f"{name}: corrupt or unreadable image: {exc}") from exc
        with im:
            return _collect_metadata(im, name)


def _collect_metadata(im: Image.Image, name: str) -> dict[str, Any]:
    text: dict[str, str] = {}
    marker: str | None = None
    software: str | None = None
    source_type: str | None = None
    payload: str | None = None

    if im.format == "PNG":
        text = {k: str(v) for k, v in im.info.items() if isinstance(v, str)}
        marker = text.get("ai_generated")
        software = text.get("Software")
        source_type = text.get("DigitalSourceType")
        payload = text.get("facegen")
    else:
        try:
            exif = im.getexif()
            user_comment = exif.get_ifd(_EXIF_IFD).get(_TAG_USER_COMMENT)
        except Exception as exc:  # noqa: BLE001 - broken EXIF: report what else we have
            logger.warning("%s: unreadable EXIF (%s)", name, exc)
            exif, user_comment = Image.Exif(), None
        for tag, key in ((_TAG_SOFTWARE, "Software"),
                         (_TAG_IMAGE_DESCRIPTION, "ImageDescription")):
            if isinstance(exif.get(tag), str):
                text[key] = exif[tag].rstrip("\x00")
        if isinstance(user_comment, bytes):
            text["UserComment"] = _decode_user_comment(user_comment)
        software = text.get("Software")
        payload = text.get("UserComment")

    xmp = _parse_xmp(im.info.get("xmp"), name)
    marker = marker or xmp.get("ai_generated")
    software = software or xmp.get("CreatorTool")
    source_type = source_type or xmp.get("DigitalSourceType")
    metadata = parse_fields(payload, name)
    if not metadata and xmp.get("metadata"):
        metadata = parse_fields(xmp["metadata"], name)

    return {
        "format": im.format,
        "ai_generated": (marker or "").strip().lower() == "true"
        or source_type in _AI_SOURCE_TYPES,
        "software": software,
        "digital_source_type": source_type,
        "metadata": metadata,
        "text": text,
    }


def _decode_user_comment(raw: bytes) -> str:
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":  # UCS-2, byte order unstated: use the BOM or guess
        little = body[:2] == b"\xff\xfe" or (body[:2] != b"\xfe\xff" and body[1:2] == b"\x00")
        return body.decode("utf-16-le" if little else "utf-16-be", "replace").lstrip(
            "\ufeff").rstrip("\x00")
    if prefix in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8", "replace").rstrip("\x00")
    return raw.decode("utf-8", "replace").rstrip("\x00")


#: the shape facegen's own metadata fields must have to be read (anything else in the object is free):
#: a PNG text chunk, an EXIF comment or an MP4 tag is attacker-written text
FIELDS_SHAPE: dict[str, Any] = {"provenance": Opt({"content_id": Opt((str, type(None))),
                                                   "watermark": Opt((dict, type(None)))})}


def parse_fields(payload: str | bytes | None, name: str) -> dict[str, Any]:
    """facegen's metadata fields from the JSON text of a text chunk, EXIF comment or container tag:
    an object of :data:`FIELDS_SHAPE`, at most ``$FACEGEN_MAX_JSON_BYTES`` and nested at most
    :data:`facegen.io.files.MAX_JSON_DEPTH` deep; anything else is ignored (logged), never a crash."""
    if not payload:
        return {}
    try:
        return parse_json(payload, name=f"{name}: facegen metadata", schema=FIELDS_SHAPE)
    except FacegenError as exc:
        logger.debug("%s; ignored", exc)
        return {}



def _parse_xmp(raw: Any, name: str) -> dict[str, str]:
    """DigitalSourceType, CreatorTool and facegen fields from an XMP packet (elements or
    attributes of rdf:Description)."""
    if not raw:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    start = raw.find("<x:xmpmeta")
    end = raw.rfind("</x:xmpmeta>")
    xml_text = raw[start:end + len("</x:xmpmeta>")] if start >= 0 and end > start else raw
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        logger.debug("%s: unreadable XMP (%s)", name, exc)
        return {}
    wanted = {
        f"{{{_NS['Iptc4xmpExt']}}}DigitalSourceType": "DigitalSourceType",
        f"{{{_NS['xmp']}}}CreatorTool": "CreatorTool",
        f"{{{_NS['facegen']}}}ai_generated": "ai_generated",
        f"{{{_NS['facegen']}}}metadata": "metadata",
    }
    found: dict[str, str] = {}
    for desc in root.iter(f"{{{_NS['rdf']}}}Description"):
        for attr, value in desc.attrib.items():
            if attr in wanted:
                found.setdefault(wanted[attr], value)
        for child in desc:
            if child.tag in wanted and child.text:
                found.setdefault(wanted[child.tag], child.text.strip())
    return found
