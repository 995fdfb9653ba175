"""C2PA Content Credentials: the signing identity, signing encoded files, reading them back.

Signing identity, in order: ``cert``/``key`` given by the caller (``--c2pa-cert`` /
``--c2pa-key``), else ``$FACEGEN_C2PA_CERT`` / ``$FACEGEN_C2PA_KEY``, else a per-installation
key and self-signed certificate made on first use in ``$FACEGEN_HOME/c2pa/`` (key file mode
0600). Self-signed means *untrusted*: the signature proves the file is unchanged since this
installation signed it, not who the installation belongs to. A certificate from a CA the
reader trusts (or passed to ``facegen inspect --trust``) makes it *trusted*.

No timestamp authority is used (an unreachable one makes signing fail), no thumbnail is
embedded, and the manifest holds no personal data: no input paths, no face crops.

c2pa-rs's rules for a leaf certificate (found by experiment): ``basicConstraints CA:FALSE``,
``keyUsage digitalSignature``, ``extendedKeyUsage emailProtection``, a SubjectKeyIdentifier and
an AuthorityKeyIdentifier. A user certificate is checked by signing a 1-pixel PNG with it
before any work starts, so an unusable one is a one-line error, not a failure after generation.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

from facegen import __version__
from facegen.errors import FacegenError, InvalidArgumentError, MissingDependencyError

logger = logging.getLogger(__name__)

ENV_CERT = "FACEGEN_C2PA_CERT"
ENV_KEY = "FACEGEN_C2PA_KEY"
DEFAULT_DIR = "c2pa"
DEFAULT_CERT = "facegen-self-signed-cert.pem"
DEFAULT_KEY = "facegen-self-signed-key.pem"
SELF_SIGNED_ORG = "facegen (self-signed, per installation)"
CREATED = "c2pa.created"
EDITED = "c2pa.edited"
SOURCE_TYPES = {
    CREATED: "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
    EDITED: "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
}
#: the custom assertion that carries facegen's own fields (content id, watermark, preset ...)
ASSERTION = "org.facegen.provenance"
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "ZIP": "application/x-zip",
        "MP4": "video/mp4"}

_DEFAULT_LOCK = threading.Lock()


class CredentialsError(FacegenError):
    """A signing certificate or key that cannot be used."""


def _c2pa() -> Any:
    try:
        import c2pa  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("c2pa-python", "provenance", "C2PA Content Credentials") from None
    return c2pa


def available() -> bool:
    try:
        _c2pa()
    except MissingDependencyError:
        return False
    return True


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate chain (PEM, leaf first) and its private key (PEM), ready for c2pa."""

    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    alg: str                        # ES256 | ES384 | ES512 | PS256 | ED25519
    source: str                     # "default" | "user"
    cert_path: str | None = None
    subject: str = ""

    @property
    def self_signed(self) -> bool:
        return self.source == "default"

    def signer(self) -> Any:
        c2pa = _c2pa()
        alg = getattr(c2pa.C2paSigningAlg, self.alg)
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, self.cert_pem, self.key_pem, None))

    def describe(self) -> str:
        kind = "per-installation self-signed certificate" if self.self_signed else "user certificate"
        return f"{kind} {self.subject!r} ({self.alg}{', ' + self.cert_path if self.cert_path else ''})"


def _crypto() -> Any:
    try:
        from cryptography import x509  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("cryptography", "provenance", "C2PA signing") from None
    return x509


def _algorithm(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: PLC0415

    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in algs:
            raise CredentialsError(f"EC curve {key.curve.name} is not usable for C2PA (use P-256, P-384 or P-521)")
        return algs[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ED25519"
    raise CredentialsError(f"a {type(key).__name__} key is not usable for C2PA (use EC P-256, RSA or Ed25519)")


def _subject(cert: Any) -> str:
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def identity_from_pem(cert_pem: bytes, key_pem: bytes, *, source: str, cert_path: str | None = None,
                      check: bool = True) -> SigningIdentity:
    """Parse and check a PEM certificate chain and key; ``check`` also signs a test image."""
    x509 = _crypto()
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    what = cert_path or "the C2PA certificate"
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CredentialsError(f"{what}: not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"the C2PA key for {what}: not an unencrypted PEM private key ({exc})") from None
    alg = _algorithm(key)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if certs[0].public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        raise CredentialsError(f"{what}: the private key does not belong to the certificate")
    identity = SigningIdentity(cert_pem, key_pem, alg, source, cert_path, _subject(certs[0]))
    if check:
        try:
            sign_bytes(_probe_png(), "PNG", build_manifest(CREATED, title="probe.png"), identity)
        except FacegenError:
            raise
        except Exception as exc:  # noqa: BLE001 - c2pa-rs refuses certificates in many ways
            raise CredentialsError(
                f"{what}: c2pa cannot sign with this certificate ({_one_line(exc)}); it needs "
                "keyUsage digitalSignature, extendedKeyUsage emailProtection, CA:FALSE, "
                "subject and authority key identifiers") from None
    return identity


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def load_identity(cert: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None,
                  *, home: str | os.PathLike[str] | None = None) -> SigningIdentity:
    """The signing identity to use (see the module docstring for the order)."""
    cert = cert or os.environ.get(ENV_CERT) or None
    key = key or os.environ.get(ENV_KEY) or None
    if cert is None and key is None:
        return default_identity(home)
    if cert is None or key is None:
        raise CredentialsError(
            "a C2PA certificate needs its key and the key its certificate: give both --c2pa-cert and "
            f"--c2pa-key (or {ENV_CERT} and {ENV_KEY})")
    from facegen.io.files import read_bytes  # noqa: PLC0415 - facegen.io imports this package

    data = [read_bytes(Path(p).expanduser(), what=f"C2PA {label}", error=CredentialsError)
            for label, p in (("certificate", cert), ("key", key))]
    return identity_from_pem(data[0], data[1], source="user", cert_path=str(cert))


def default_identity(home: str | os.PathLike[str] | None = None) -> SigningIdentity:
    """This installation's self-signed identity, made on first use (key file mode 0600)."""
    from facegen.paths import facegen_home  # noqa: PLC0415

    folder = (Path(home) if home is not None else facegen_home()) / DEFAULT_DIR
    cert_path, key_path = folder / DEFAULT_CERT, folder / DEFAULT_KEY
    with _DEFAULT_LOCK, _file_lock(folder):
        if not (cert_path.is_file() and key_path.is_file()):
            cert_pem, key_pem = make_self_signed()
            _write_private(key_path, key_pem, 0o600)
            _write_private(cert_path, cert_pem, 0o644)
            logger.info("made this installation's self-signed C2PA certificate: %s", cert_path)
        from facegen.io.files import read_bytes  # noqa: PLC0415 - facegen.io imports this package

        cert_pem, key_pem = (read_bytes(p, what="C2PA file", error=CredentialsError)
                             for p in (cert_path, key_path))
    return identity_from_pem(cert_pem, key_pem, source="default", cert_path=str(cert_path), check=False)


@contextlib.contextmanager
def _file_lock(folder: Path):  # noqa: ANN202 - context manager
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # Windows: the thread lock only
        yield
        return
    from facegen.io.files import open_lock_file  # noqa: PLC0415 - facegen.io imports this package

    fd = open_lock_file(folder / ".lock", error=CredentialsError)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically with exactly ``mode`` (the key is never readable by others,
    not even while it is being written)."""
    from facegen.io.atomic import atomic_write  # noqa: PLC0415 - facegen.io imports this package

    atomic_write(path, lambda fh: fh.write(data), mode=mode)


def make_self_signed(common_name: str | None = None, days: int = 3650) -> tuple[bytes, bytes]:
    """A new EC P-256 key and a self-signed leaf certificate c2pa-rs accepts (PEM, PEM)."""
    x509 = _crypto()
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(pub)
    cn = common_name or f"facegen self-signed {ski.digest.hex()[:12]}"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, SELF_SIGNED_ORG)])
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _probe_png() -> bytes:
    from PIL import Image  # noqa: PLC0415

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- sign


def build_manifest(action: str, *, title: str, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest definition: one ``c2pa.actions`` entry (created or edited, with the
    IPTC digital source type, the software agent, preset and adapter) and facegen's own
    assertion with ``fields`` (content id, watermark, preset, adapter, seed ...)."""
    if action not in SOURCE_TYPES:
        raise InvalidArgumentError(f"C2PA action must be {CREATED} or {EDITED}, got {action!r}")
    fields = dict(fields or {})
    params = {k: fields[k] for k in ("preset", "adapter", "task", "content_id") if fields.get(k) is not None}
    act = {"action": action, "digitalSourceType": SOURCE_TYPES[action],
           "softwareAgent": {"name": "facegen", "version": __version__}}
    if params:
        act["parameters"] = params
    actions = [act]
    manifest: dict[str, Any] = {"claim_generator_info": [{"name": "facegen", "version": __version__}],
                                "title": title}
    if action == EDITED:
        # c2pa requires an edit to start from an opened parent ingredient: it is described
        # without its file name, hash or thumbnail (no personal data in the manifest)
        manifest["ingredients"] = [{"title": "input image", "relationship": "parentOf", "label": "parent"}]
        actions.insert(0, {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}})
    manifest["assertions"] = [{"label": "c2pa.actions", "data": {"actions": actions}},
                              {"label": ASSERTION, "data": json.loads(json.dumps(fields, default=str))}]
    return manifest


def _context(settings: Mapping[str, Any], signer: Any = None) -> Any:
    c2pa = _c2pa()
    return c2pa.Context(settings=c2pa.Settings.from_dict(dict(settings)), signer=signer)


def sign_bytes(data: bytes, fmt: str, manifest: Mapping[str, Any], identity: SigningIdentity) -> bytes:
    """``data`` (an encoded PNG/JPEG/WebP/ZIP) with ``manifest`` signed and embedded."""
    mime = MIME.get(fmt.upper())
    if mime is None:
        raise InvalidArgumentError(f"C2PA signing supports {', '.join(MIME)}, not {fmt}")
    c2pa = _c2pa()
    ctx = _context({"builder": {"thumbnail": {"enabled": False}}}, identity.signer())
    try:
        builder = c2pa.Builder(dict(manifest), context=ctx)
        dst = io.BytesIO()
        builder.sign(mime, io.BytesIO(data), dst)
        return dst.getvalue()
    finally:
        with contextlib.suppress(Exception):
            ctx.close()


# --------------------------------------------------------------------------- read


def check_certificates(pem: bytes, what: str) -> None:
    """``pem`` must hold at least one PEM certificate (a trust anchor c2pa can use); else a
    :class:`CredentialsError` naming ``what`` (c2pa's own error on a bad anchor is a COSE failure)."""
    x509 = _crypto()
    try:
        certs = x509.load_pem_x509_certificates(bytes(pem))
    except ValueError as exc:
        raise CredentialsError(f"{what}: not a PEM certificate ({_one_line(exc)[:120]})") from None
    if not certs:  # pragma: no cover - cryptography raises on none
        raise CredentialsError(f"{what}: holds no certificate")


def read_credentials(data: bytes | BinaryIO, fmt: str | None = None,
                     trust: Iterable[bytes] = ()) -> dict[str, Any]:
    """What the file's C2PA manifest says (``data``: the bytes, or a seekable binary file).

    ``state``: ``absent`` | ``valid-untrusted`` (signature and hashes fine, signer not vouched
    for) | ``trusted`` (also chains to a trust anchor in ``trust``) | ``invalid`` (tampered
    pixels or manifest, or a broken signature: ``failures`` says which).
    """
    c2pa = _c2pa()
    anchors = b"\n".join(bytes(t).strip() for t in trust)
    settings: dict[str, Any] = {"verify": {"ocsp_fetch": False}}
    if anchors:
        settings["trust"] = {"user_anchors": anchors.decode("ascii", "replace")}
    ctx = _context(settings)
    mime = MIME.get((fmt or "").upper())
    try:
        try:
            stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
            reader = c2pa.Reader.try_create(mime, stream, None, ctx)
        except Exception as exc:  # noqa: BLE001 - a corrupt manifest store
            return {"state": "invalid", "failures": [_one_line(exc)], "signer": None, "actions": []}
        if reader is None:
            return {"state": "absent"}
        with reader:
            state = (reader.get_validation_state() or "").lower()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    finally:
        with contextlib.suppress(Exception):
            ctx.close()
    failures = [f.get("code", "") for f in (results.get("activeManifest") or {}).get("failure", [])]
    if state == "trusted":
        verdict = "trusted"
    elif state == "valid" and all(code.startswith("signingCredential.untrusted") for code in failures):
        verdict = "valid-untrusted"
    else:
        verdict = "invalid"
    sig = manifest.get("signature_info") or {}
    actions: list[dict[str, Any]] = []
    facegen_fields: dict[str, Any] = {}
    for assertion in manifest.get("assertions", []):
        label = str(assertion.get("label", ""))
        if label.startswith("c2pa.actions"):
            for act in (assertion.get("data") or {}).get("actions", []):
                actions.append({"action": act.get("action"), "digitalSourceType": act.get("digitalSourceType"),
                                "softwareAgent": act.get("softwareAgent"), "parameters": act.get("parameters")})
        elif label == ASSERTION:
            facegen_fields = dict(assertion.get("data") or {})
    generators = [g.get("name") for g in manifest.get("claim_generator_info", []) if isinstance(g, dict)]
    return {
        "state": verdict,
        "signer": {"common_name": sig.get("common_name"), "issuer": sig.get("issuer"), "alg": sig.get("alg"),
                   "self_signed": sig.get("issuer") == SELF_SIGNED_ORG},
        "claim_generator": generators[0] if generators else None,
        "actions": actions,
        "facegen": facegen_fields,
        "failures": failures,
    }
