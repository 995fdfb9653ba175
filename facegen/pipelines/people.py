"""Several people in one generated image, each keeping their own identity.

``pipe(people=[["a1.jpg", "a2.jpg"], ["b.jpg"]], layout="side-by-side", ...)`` on
:class:`~facegen.pipelines.generation.IDGenerationPipeline`: a stage of its call, before
anything is conditioned (:func:`people_stage`), whose parts are:

    1. check      the preset places this many people (``max_people``, data on its adapter)
    2. layout     ``"side-by-side"``, ``"group"`` or explicit face boxes (fractions of the
                  image) → face boxes in output pixels → one region mask per person
                  (:mod:`facegen.adapters.regions`), and each person's keypoints in their box
                  for presets that draw keypoints
    3. identities each person's photos (or embeddings) averaged into one identity, as today
    4. generate   the rest of the same call with one identity per region (``id_masks``)
    5. report     per image and person: the face found in their box, its ID similarity by the
                  independent judge, and its similarity to everyone else
                  (:mod:`facegen.pipelines.people_report`)

One person without a layout is exactly today's single-person call (same pixels), plus the
per-person report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facegen.adapters.regions import box_pixels, region_masks
from facegen.adapters.registry import check_people as check_people_count
from facegen.choices import PEOPLE_LAYOUT
from facegen.errors import InvalidArgumentError
from facegen.faces.pose import kps_in_box
from facegen.id.embedding import IDEmbedding
from facegen.pipelines.output import PipelineOutput
from facegen.pipelines.people_report import (
    PeopleJudge,
    PersonReport,
    make_people_judge,
    overall_similarity,
    single_person,
    unmeasured_people,
)
from facegen.pipelines.request import CallArgs

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]            # x0, y0, x1, y1 in fractions of the image
_SINGLE = (str, Path, bytes, IDEmbedding, np.ndarray)


#: the smallest face box side, as a fraction of the image (about 25 px of a 512 px image)
MIN_BOX = 0.05


def parse_layout(layout: Any, n: int) -> list[Box]:
    """Face boxes (fractions) of ``n`` people: a layout name (:data:`facegen.choices.PEOPLE_LAYOUT`), a string
    ``"x0,y0,x1,y1;x0,y0,x1,y1"``, or a sequence of ``(x0, y0, x1, y1)`` fractions; boxes must
    lie in the image and not overlap."""
    if layout is None or layout == "side-by-side":
        return _side_by_side(n)
    if layout == "group":
        return _group(n)
    if isinstance(layout, str):
        if not any(c.isdigit() for c in layout):
            raise InvalidArgumentError(f"unknown layout {layout!r}; use {', '.join(PEOPLE_LAYOUT.values)} or face boxes "
                                       "'x0,y0,x1,y1;...' in fractions of the image")
        try:
            layout = [[float(v) for v in part.split(",")] for part in layout.split(";") if part.strip()]
        except ValueError:
            raise InvalidArgumentError(f"layout {layout!r}: face boxes are 'x0,y0,x1,y1;...' numbers "
                                       "in fractions (0..1) of the image") from None
    boxes = [tuple(float(v) for v in b) for b in layout]
    if len(boxes) != n:
        raise InvalidArgumentError(f"the layout has {len(boxes)} face boxes for {n} people; give one box per person")
    for i, b in enumerate(boxes):
        if len(b) != 4 or not all(np.isfinite(b)) or not (0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1):
            raise InvalidArgumentError(f"face box {i} {b}: want x0 < x1 and y0 < y1, all fractions in 0..1")
        if min(b[2] - b[0], b[3] - b[1]) < MIN_BOX:     # a sliver holds no face: that person would vanish
            raise InvalidArgumentError(f"face box {i} {b}: too small for a face; each side must be at least "
                                       f"{MIN_BOX} of the image")
    for i in range(n):
        for j in range(i + 1, n):
            a, b = boxes[i], boxes[j]
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                raise InvalidArgumentError(f"face boxes {i} and {j} overlap; give each person their own place")
    return boxes  # type: ignore[return-value]


def _side_by_side(n: int) -> list[Box]:
    """One row: each person centred in their column, faces as large as the column allows."""
    side = min(0.6 / n, 0.36)
    return [((i + 0.5) / n - side / 2, 0.38 - side / 2, (i + 0.5) / n + side / 2, 0.38 + side / 2)
            for i in range(n)]


def _group(n: int) -> list[Box]:
    """A group photo: faces closer together than side by side, smaller, heights alternating."""
    spacing = min(0.8 / n, 0.24)
    side = 0.8 * spacing
    out = []
    for i in range(n):
        x, y = 0.5 + (i - (n - 1) / 2) * spacing, (0.34, 0.42)[i % 2]
        out.append((x - side / 2, y - side / 2, x + side / 2, y + side / 2))
    return out


def _items(person: Any) -> list[Any]:
    if isinstance(person, _SINGLE) or hasattr(person, "convert"):        # one photo / array / PIL / embedding
        return [person]
    items = list(person)
    if not items:
        raise InvalidArgumentError("a person has no photos: give at least one photo (or embedding) each")
    return items


@dataclasses.dataclass
class PeoplePlan:
    """What the call places: per person their identity, photos, face box and region."""

    identities: list[IDEmbedding]
    photos: list[list[np.ndarray]]                 # per person the RGB photos (empty: embeddings given)
    boxes: list[Box]
    pixel_boxes: list[tuple[int, int, int, int]]
    masks: list[np.ndarray] | None
    control_kps: np.ndarray | None                 # (K, 5, 2) for presets that draw keypoints


def check_people(pipe: Any, people: Any, layout: Any) -> list[list[Any]]:
    """Stage 1: one list of photos/embeddings per person, and a preset that places that many."""
    if isinstance(people, _SINGLE) or not isinstance(people, Sequence) or len(people) == 0:
        raise InvalidArgumentError("people must be a list with one entry (photos or embeddings) per person")
    persons = [_items(p) for p in people]
    n = len(persons)
    check_people_count(pipe.preset, n, placed=layout is not None)
    for i, items in enumerate(persons):
        kinds = {isinstance(x, IDEmbedding) for x in items}
        if len(kinds) > 1:
            raise InvalidArgumentError(f"person {i}: give photos or embeddings, not both")
    return persons


def plan_people(pipe: Any, persons: Sequence[Sequence[Any]], layout: Any, width: int,
                height: int) -> PeoplePlan:
    """Stages 2-3: the layout's face boxes and regions, each person's identity (photos averaged)."""
    boxes = parse_layout(layout, len(persons))          # a bad layout fails before any photo is read
    identities, photos = [], []
    for items in persons:
        if isinstance(items[0], IDEmbedding):
            embs, rgbs = list(items), []
        else:
            embs, rgbs = pipe.embed_photos(items)
        identities.append(pipe.identities(embs, separate=False)[0])
        photos.append(rgbs)
    px = [box_pixels(b, width, height) for b in boxes]
    kps = None
    if pipe.adapter.supports_control_kps:
        kps = np.stack([kps_in_box(e.face.kps if e.face is not None else None, b) for e, b in zip(identities, px)])
    return PeoplePlan(identities, photos, boxes, px, region_masks(px, width, height), kps)


@dataclasses.dataclass
class PeopleStage:
    """The people stage of :meth:`IDGenerationPipeline.__call__`, before anything is conditioned:
    what the call generates from (identities, regions, keypoints, the per-identity arguments
    it replaces), the per-image hook that reports each person, and :meth:`finish`, which puts
    the per-person reports on the output."""

    id_images: list[Any] | None
    id_embeds: list[IDEmbedding] | None
    args: CallArgs
    measure_similarity: bool
    on_images: Callable[[int, list[Any], list[dict[str, Any]]], None] | None
    finish: Callable[[PipelineOutput], PipelineOutput]


def people_stage(pipe: IDGenerationPipeline, people: Any, layout: Any, args: CallArgs, *, given: dict[str, Any],
                 measure_similarity: bool, on_images: Callable[[int, list[Any], list[dict[str, Any]]], None] | None
                 ) -> PeopleStage:
    """Stages 1-3 above for ``pipe(people=..., layout=...)``; ``given`` are the per-identity
    arguments the caller also passed (refused: ``people`` replaces them)."""
    clash = sorted(k for k, v in given.items() if v is not None)
    clash += [k for k in ("id_masks", "control_kps", "face_layout") if getattr(args, k) is not None]
    if clash:
        raise InvalidArgumentError(f"people= places every person itself; remove {', '.join(clash)}")
    persons = check_people(pipe, people, layout)
    if len(persons) == 1 and layout is None:            # today's single-person call, same pixels
        embeds = isinstance(persons[0][0], IDEmbedding)

        def one_done(first: int, images: list[Any], metas: list[dict[str, Any]]) -> None:
            if on_images is not None:
                on_images(first, images, [{**meta, "people": 1, "people_report": [
                    r.to_dict() for r in single_person(meta["id_similarity"])]} for meta in metas])

        def finish_one(out: PipelineOutput) -> PipelineOutput:
            out.people = [single_person(sim) for sim in out.id_similarity]
            for meta, rep in zip(out.metadata, out.people):
                meta.update(people=1, people_report=[r.to_dict() for r in rep])
            return out
        return PeopleStage(None if embeds else list(persons[0]), list(persons[0]) if embeds else None, args,
                           measure_similarity, one_done, finish_one)
    d = pipe.preset.defaults
    width = d.width if args.width is None else int(args.width)
    height = d.height if args.height is None else int(args.height)
    pipe.check_inputs(id_embeds=[None] * len(persons), **dataclasses.asdict(args))   # before any photo is read
    plan = plan_people(pipe, persons, layout, width, height)
    judge = make_people_judge(pipe, plan.identities, plan.photos) if measure_similarity else None
    reports: dict[int, list[PersonReport]] = {}
    extra = {"people": len(persons), "reference_photos": sum(len(p) for p in plan.photos),
             "layout": [[round(float(v), 4) for v in b] for b in plan.boxes],
             "id_judge": None if judge is None else judge.name, "face_layout": None}

    def batch_done(first: int, images: list[Any], metas: list[dict[str, Any]]) -> None:
        out = []
        for i, (image, meta) in enumerate(zip(images, metas), start=first):
            reports[i] = _report(judge, image, plan)
            out.append({**meta, **extra, "id_similarity": overall_similarity(reports[i]),
                        "people_report": [r.to_dict() for r in reports[i]]})
        if on_images is not None:
            on_images(first, images, out)

    def finish(out: PipelineOutput) -> PipelineOutput:
        out.people = [reports[i] for i in range(len(out))]
        out.id_similarity = [overall_similarity(r) for r in out.people]
        for meta, rep in zip(out.metadata, out.people):
            meta.update(extra, people_report=[r.to_dict() for r in rep])
        return out
    return PeopleStage(None, plan.identities, dataclasses.replace(args, id_masks=plan.masks,
                                                                  control_kps=plan.control_kps),
                       False, batch_done, finish)


def _report(judge: PeopleJudge | None, image: Any, plan: PeoplePlan) -> list[PersonReport]:
    if judge is None:
        return unmeasured_people(plan.boxes, plan.pixel_boxes)
    rgb = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
    return judge.report(rgb, plan.boxes, plan.pixel_boxes)
