"""Sets of verification pairs: from an insightface ``.bin``, an LFW-style ``pairs.txt`` over an
image folder, or drawn from any identity-folder set (:func:`pairs_from_dir`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegen.errors import InvalidArgumentError
from facegen.fr.protocol import NUM_FOLDS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class PairSet:
    """Two image references per pair (an index into ``images``), the labels, and where known the
    identity of each side.  ``aligned``: the images are already the encoder's aligned crops
    (a ``.bin``'s 112×112 ArcFace crops), else faces are detected and aligned first."""

    name: str
    images: list[str | bytes]                   # paths or encoded bytes
    left: np.ndarray
    right: np.ndarray
    same: np.ndarray
    num_folds: int = NUM_FOLDS
    aligned: bool = False
    identities: list[tuple[str, str]] | None = None    # (left, right) identity of each pair
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.same.size)


def from_bin(path: str | Path) -> PairSet:
    from facegen.fr.binfile import read_bin  # noqa: PLC0415

    images, issame = read_bin(path)
    n = len(issame)
    return PairSet(Path(path).stem, list(images), np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2),
                   np.array(issame, dtype=bool), aligned=True)


def _lfw_image(root: Path, name: str, number: str, where: str) -> str:
    try:
        k = int(number)
    except ValueError:
        raise InvalidArgumentError(f"{where}: '{number}' is not an image number") from None
    for ext in IMAGE_EXTENSIONS:
        p = root / name / f"{name}_{k:04d}{ext}"
        if p.is_file():
            return str(p)
    raise InvalidArgumentError(f"{where}: no image {name}/{name}_{k:04d}.jpg (or .png …) in {root}")


def from_pairs_txt(pairs: str | Path, images: str | Path) -> PairSet:
    """LFW's ``pairs.txt``: an optional header ``FOLDS PAIRS_PER_FOLD``, then ``name n1 n2``
    (genuine) or ``name1 n1 name2 n2`` (impostor) per line; images ``DIR/name/name_%04d.jpg``."""
    pp, root = Path(pairs), Path(images)
    if not pp.is_file():
        raise InvalidArgumentError(f"{pp}: no such pairs file")
    if not root.is_dir():
        raise InvalidArgumentError(f"{root}: no such image folder (--images)")
    lines = [(n, ln.split()) for n, ln in enumerate(pp.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if ln.strip()]
    folds = NUM_FOLDS
    if lines and len(lines[0][1]) == 2 and all(t.isdigit() for t in lines[0][1]):
        folds = max(2, int(lines[0][1][0]))
        lines = lines[1:]
    index: dict[str, int] = {}
    paths: list[str] = []
    left, right, same, ids = [], [], [], []

    def ref(name: str, num: str, where: str) -> int:
        path = _lfw_image(root, name, num, where)
        if path not in index:
            index[path] = len(paths)
            paths.append(path)
        return index[path]

    for n, tok in lines:
        where = f"{pp} line {n}"
        if len(tok) == 3:
            a, b, s, pair_ids = ref(tok[0], tok[1], where), ref(tok[0], tok[2], where), True, (tok[0], tok[0])
        elif len(tok) == 4:
            a, b, s, pair_ids = ref(tok[0], tok[1], where), ref(tok[2], tok[3], where), False, (tok[0], tok[2])
        else:
            raise InvalidArgumentError(f"{where}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {len(tok)} fields")
        left.append(a)
        right.append(b)
        same.append(s)
        ids.append(pair_ids)
    if not same:
        raise InvalidArgumentError(f"{pp} lists no pairs")
    return PairSet(pp.stem, list(paths), np.array(left), np.array(right), np.array(same, dtype=bool),
                   num_folds=folds, identities=ids)


def pairs_from_dir(root: str | Path, seed: int = 0, pairs_per_fold: int = 600,
                   num_folds: int = NUM_FOLDS) -> PairSet:
    """Balanced genuine and impostor pairs drawn (seeded) from an identity-folder set
    (``DIR/<identity>/<image>``), in identity-disjoint folds: each identity's pairs are in one
    fold only, so a threshold learnt on the other folds never saw that person.  Each fold has
    the same number of pairs, half genuine, half impostor (both sides of an impostor pair from
    the fold's identities).  With fewer than two identities per fold, fewer folds are made
    (at least 2; the number is in the result)."""
    from facegen.dataset.report_source import open_dataset  # noqa: PLC0415

    source = open_dataset(root)
    if source.format != "imagefolder":
        root_p = Path(root)
        raise InvalidArgumentError(f"{root_p} is a facegen WebDataset: --pairs-from takes identity folders "
                                   "(write the dataset with format imagefolder)")
    by_id: dict[int, list[int]] = {}
    for i, lab in enumerate(source.labels.tolist()):
        by_id.setdefault(lab, []).append(i)
    ids = sorted(by_id)
    folds = min(num_folds, len(ids) // 2)
    if folds < 2:
        raise InvalidArgumentError(f"{root}: {len(ids)} identities; drawing identity-disjoint folds needs at "
                                   "least 4 identity folders")
    rng = np.random.default_rng(seed)
    order = [ids[k] for k in rng.permutation(len(ids))]
    fold_ids = [order[k::folds] for k in range(folds)]
    genuine_avail = [sum(len(by_id[i]) * (len(by_id[i]) - 1) // 2 for i in f) for f in fold_ids]
    impostor_avail = [sum(len(by_id[i]) * len(by_id[j]) for x, i in enumerate(f) for j in f[x + 1:])
                      for f in fold_ids]
    per_kind = min(pairs_per_fold // 2, *genuine_avail, *impostor_avail)   # every fold the same size
    if per_kind < 1:
        raise InvalidArgumentError(f"{root}: a fold has no identity with two images; give identity folders "
                                   "with at least two images each")
    left: list[int] = []
    right: list[int] = []
    same: list[bool] = []
    for f in fold_ids:
        gen = [(a, b) for i in f for x, a in enumerate(by_id[i]) for b in by_id[i][x + 1:]]
        fold_pairs = ([(gen[k][0], gen[k][1], True) for k in sorted(rng.choice(len(gen), per_kind, replace=False))]
                      + [(a, b, False) for a, b in _impostors(f, by_id, per_kind, rng)])
        fold_pairs = [fold_pairs[k] for k in rng.permutation(len(fold_pairs))]
        left += [p[0] for p in fold_pairs]
        right += [p[1] for p in fold_pairs]
        same += [p[2] for p in fold_pairs]
    per_fold = 2 * per_kind
    name_of = source.identities
    label = source.labels
    notes = [f"{folds} identity-disjoint folds of {per_fold} pairs ({per_kind} genuine, {per_kind} impostor), "
             f"seed {seed}"] + list(source.warnings)
    return PairSet(Path(root).name, [str(Path(source.root) / n) for n in source.names], np.array(left),
                   np.array(right), np.array(same, dtype=bool), num_folds=folds,
                   identities=[(name_of[label[a]], name_of[label[b]]) for a, b in zip(left, right)], notes=notes)


def _impostors(fold: list[int], by_id: dict[int, list[int]], n: int,
               rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n`` distinct pairs of images of two different identities of the fold (enumerated when
    few are possible, else drawn and deduplicated)."""
    possible = sum(len(by_id[i]) * len(by_id[j]) for x, i in enumerate(fold) for j in fold[x + 1:])
    if possible <= 200_000:
        every = [(a, b) for x, i in enumerate(fold) for j in fold[x + 1:] for a in by_id[i] for b in by_id[j]]
        return [every[k] for k in sorted(rng.choice(len(every), n, replace=False))]
    members = [(i, img) for i in fold for img in by_id[i]]
    picked: set[tuple[int, int]] = set()
    while len(picked) < n:
        x, y = rng.choice(len(members), size=2, replace=False)
        (ia, a), (ib, b) = members[x], members[y]
        if ia != ib:
            picked.add((min(a, b), max(a, b)))
    return sorted(picked)


def read_groups(path: str | Path, known: set[str]) -> dict[str, str]:
    """``identity,group`` rows of a CSV (a header row ``identity,group`` is allowed); every named
    identity must be in the set being scored."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"{p}: no such groups file")
    groups: dict[str, str] = {}
    with p.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise InvalidArgumentError(f"{p} line {n}: expected 'identity,group', got {len(row)} fields")
            ident, group = row[0].strip(), row[1].strip()
            if n == 1 and (ident.lower(), group.lower()) == ("identity", "group"):
                continue
            groups[ident] = group
    if not groups:
        raise InvalidArgumentError(f"{p} names no identity")
    unknown = sorted(set(groups) - known)
    if unknown:
        raise InvalidArgumentError(f"{p} names {len(unknown)} identit{'y' if len(unknown) == 1 else 'ies'} not in "
                                   f"the pairs: {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
    return groups
