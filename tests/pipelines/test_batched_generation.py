"""Dataset-mode batching: many identities (prompts, poses) in one diffusers call, same pixels as
one call per image up to float rounding; static padded shapes for compiled pipelines."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from facegen.adapters.base import Sample
from facegen.adapters.batching import enable_per_sample_ip_embeds, pipeline_cache
from facegen.faces.pose import head_pose_kps, pose_kps
from facegen.dataset.generate import make_dataset_generate_fn
from facegen.dataset.variation import WorkItem
from facegen.errors import InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.paths import ModelAccess
from facegen.pipelines.generation import IDGenerationPipeline, padded_batch_size

STEPS = 3
PRESETS = ("tiny", "tiny-faceid", "tiny-instantid")
# fp32 on the CPU: batching only reorders float reductions (the benchmark's tolerance is wider)
MAX_LEVELS = 2


def emb(seed: int, pipe: IDGenerationPipeline) -> IDEmbedding:
    v = np.random.default_rng(seed).normal(size=pipe.preset.id_dim).astype(np.float32)
    v /= np.linalg.norm(v)
    return IDEmbedding(v if pipe.adapter.normalise else 20.0 * v, pipe.encoder)


@pytest.fixture(scope="module")
def pipes() -> Iterator[dict[str, IDGenerationPipeline]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {name: IDGenerationPipeline.from_preset(name, device="cpu") for name in PRESETS}
    torch.set_num_threads(before)        # process-wide: later tests (the pixel-hash record) use the default


@pytest.fixture(params=PRESETS)
def pipe(request, pipes) -> IDGenerationPipeline:
    return pipes[request.param]


def single(pipe: IDGenerationPipeline, e: IDEmbedding, seed: int, **kw) -> np.ndarray:
    return pipe(id_embeds=e, seeds=[seed], num_inference_steps=STEPS, progress=False,
                measure_similarity=False, **kw).rgb(0)


def generate_in_one_call(pipe: IDGenerationPipeline, embeds, seeds, prompts=None, control_kps=None, batch_size=None,
                  **kw) -> list[np.ndarray]:
    """The dataset's call: one Sample per image, ``batch_size`` (default: all) per diffusers call."""
    n = len(embeds)
    prompts = prompts or [None] * n
    control_kps = control_kps or [None] * n
    samples = [Sample.of(e, p, k) for e, p, k in zip(embeds, prompts, control_kps)]
    return pipe(samples=samples, seeds=seeds, batch_size=batch_size or max(n, 1), progress=False,
                measure_similarity=False, output_type="np", **kw).images


def levels(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_one_call_for_many_identities_equals_one_call_each(pipe):
    embeds = [emb(i, pipe) for i in range(3)]
    seeds = [101, 102, 103]
    calls = []
    original = type(pipe.pipe).__call__

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("generator"))
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(pipe.pipe), "__call__", spy)
        many = generate_in_one_call(pipe, embeds, seeds, num_inference_steps=STEPS)
    assert len(calls) == 1 and len(calls[0]) == 3           # one diffusers call, one generator per image
    assert all(im.dtype == np.uint8 and im.shape == (64, 64, 3) for im in many)
    alone = [single(pipe, e, s) for e, s in zip(embeds, seeds)]
    for a, b in zip(many, alone):
        assert levels(a, b) <= MAX_LEVELS
    # each sample has its own identity: image 0 is not image 1's identity with image 0's noise
    assert levels(many[0], single(pipe, embeds[1], seeds[0])) > 2 * MAX_LEVELS


def test_per_sample_prompts(pipes):
    pipe = pipes["tiny-faceid"]
    embeds = [emb(5, pipe), emb(5, pipe)]
    prompts = ["a photo of a person at the beach", "a charcoal drawing of a person"]
    many = generate_in_one_call(pipe, embeds, [7, 7], prompts=prompts, num_inference_steps=STEPS)
    for im, prompt in zip(many, prompts):
        assert levels(im, single(pipe, embeds[0], 7, prompt=prompt)) <= MAX_LEVELS
    assert levels(many[0], many[1]) > 5                      # same identity and seed: only the prompt differs
    cache = pipeline_cache(pipe.pipe)
    hits = cache.hits
    generate_in_one_call(pipe, embeds, [7, 7], prompts=prompts, num_inference_steps=STEPS)
    assert cache.hits == hits + 2                            # prompts encoded once, then reused


def test_per_sample_poses_instantid(pipes, monkeypatch):
    pipe = pipes["tiny-instantid"]
    e = emb(9, pipe)
    kps = [pose_kps(-30, 64, 64), pose_kps(30, 64, 64)]
    drawn = []
    original = type(pipe.pipe).__call__

    def spy(self, *args, **kwargs):
        drawn.append(kwargs["image"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe.pipe), "__call__", spy)
    many = generate_in_one_call(pipe, [e, e], [3, 3], control_kps=kps, num_inference_steps=STEPS)
    assert len(drawn[0]) == 2                                # one keypoint drawing per sample
    assert not np.array_equal(np.asarray(drawn[0][0]), np.asarray(drawn[0][1]))
    for i, (im, k) in enumerate(zip(many, kps)):
        assert levels(im, single(pipe, e, 3, control_kps=k)) <= MAX_LEVELS
        assert np.array_equal(np.asarray(drawn[0][i]), np.asarray(drawn[1 + i][0]))  # the single run's drawing


def test_compiled_pipelines_see_padded_static_batches(pipes, monkeypatch):
    pipe = pipes["tiny"]
    embeds = [emb(i, pipe) for i in range(5)]
    seeds = list(range(20, 25))
    plain = generate_in_one_call(pipe, embeds, seeds, num_inference_steps=STEPS, batch_size=4)
    applied = type("Applied", (), {"config": type("C", (), {"compile": True})(), "skipped": {}})()
    monkeypatch.setattr("facegen.speed.engine.applied_options", lambda _pipe: applied)
    sizes = []
    original = type(pipe.pipe).__call__

    def spy(self, *args, **kwargs):
        sizes.append(len(kwargs["generator"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe.pipe), "__call__", spy)
    padded = generate_in_one_call(pipe, embeds, seeds, num_inference_steps=STEPS, batch_size=4)
    assert sizes == [4, 1]
    padded3 = generate_in_one_call(pipe, embeds[:3], seeds[:3], num_inference_steps=STEPS, batch_size=4)
    assert sizes[-1] == 4 and len(padded3) == 3              # 3 → padded to 4, the extra image dropped
    assert len(padded) == 5
    for a, b in zip(padded + padded3, plain + plain[:3]):
        assert levels(a, b) <= MAX_LEVELS


def test_padded_batch_size():
    assert [padded_batch_size(n, 32) for n in (1, 2, 3, 5, 9, 17, 32)] == [1, 2, 4, 8, 16, 32, 32]
    assert padded_batch_size(20, 24) == 24
    with pytest.raises(InvalidArgumentError):
        padded_batch_size(5, 4)


def test_bad_batches_are_refused(pipes):
    pipe = pipes["tiny"]
    e = emb(1, pipe)
    with pytest.raises(InvalidArgumentError, match="empty"):
        generate_in_one_call(pipe, [], [])
    with pytest.raises(InvalidArgumentError, match="seeds"):
        generate_in_one_call(pipe, [e, e], [1])
    with pytest.raises(InvalidArgumentError, match="no text prompt"):
        generate_in_one_call(pipe, [e], [1], prompts=["a photo"])
    with pytest.raises(InvalidArgumentError, match="pose"):
        generate_in_one_call(pipe, [e], [1], control_kps=[np.zeros((5, 2))])
    wrong = IDEmbedding(np.ones(512, np.float32) / np.sqrt(512), "antelopev2-glintr100")
    with pytest.raises(Exception, match="trained on"):
        generate_in_one_call(pipe, [wrong], [1])


def test_per_sample_ip_embeds_keep_diffusers_tiling_for_one_identity(pipes):
    p = enable_per_sample_ip_embeds(pipes["tiny-faceid"].pipe)
    one = torch.arange(2.0).reshape(2, 1, 1)                                 # [neg, pos] of one identity
    tiled = p.prepare_ip_adapter_image_embeds(None, [one], "cpu", 3, True)[0]
    assert tiled.flatten().tolist() == [0, 0, 0, 1, 1, 1]
    per_sample = torch.arange(6.0).reshape(6, 1, 1)                          # [neg x3, pos x3]
    kept = p.prepare_ip_adapter_image_embeds(None, [per_sample], "cpu", 3, True)[0]
    assert kept.flatten().tolist() == list(range(6))


# ----------------------------------------------------------------------------- poses
def test_head_pose_keypoints_turn_the_right_way():
    front = head_pose_kps()
    right, up = head_pose_kps(yaw=30), head_pose_kps(pitch=20)
    assert np.allclose(front[2, 0], front[:2, 0].mean())                     # nose between the eyes
    assert right[2, 0] > right[:2, 0].mean()                                 # turned right: nose right of the eyes
    assert up[2, 1] - up[:2, 1].mean() < front[2, 1] - front[:2, 1].mean()  # looking up: nose nearer the eyes
    tilted = head_pose_kps(roll=15)
    assert tilted[1, 1] > tilted[0, 1]                                       # clockwise: the right eye drops
    kps = pose_kps({"yaw": 20, "pitch": -10}, 512, 512)
    assert kps.shape == (5, 2) and (kps > 0).all() and (kps < 512).all()
    assert np.allclose(pose_kps([[0.1, 0.2]] * 5, 100, 50), [[10, 10]] * 5)


@pytest.mark.parametrize("bad", ["left", [1, 2], {"yaw": 10, "tilt": 3}, 95, [[2, 0]] * 5])
def test_bad_poses_say_what_a_pose_is(bad):
    with pytest.raises(InvalidArgumentError, match="yaw|keypoints|degrees"):
        pose_kps(bad, 64, 64)


# ----------------------------------------------------------------------------- dataset generator
def items(pipe: IDGenerationPipeline, n: int, **kw) -> list[WorkItem]:
    out = []
    for i in range(n):
        v = np.random.default_rng(i).normal(size=pipe.preset.id_dim).astype(np.float32)
        out.append(WorkItem(identity=i, index=0, attempt=0, seed=1000 + i, noise_level=0.0,
                            embedding=v / np.linalg.norm(v), **kw))
    return out


def test_dataset_generator_batched_mode_matches_per_item_mode(pipes):
    batched = make_dataset_generate_fn("tiny", ModelAccess(device="cpu"), steps=STEPS, batched=True)
    per_item = make_dataset_generate_fn("tiny", ModelAccess(device="cpu"), steps=STEPS, batched=False)
    work = items(pipes["tiny"], 3)
    for a, b in zip(batched(work), per_item(work)):
        assert levels(a, b) <= MAX_LEVELS


def test_dataset_poses_need_an_instantid_preset(pipes):
    gen = make_dataset_generate_fn("tiny", ModelAccess(device="cpu"), steps=STEPS)
    with pytest.raises(InvalidArgumentError, match="no pose control"):
        gen(items(pipes["tiny"], 1, pose=30))
    gen = make_dataset_generate_fn("tiny-instantid", ModelAccess(device="cpu"), steps=STEPS, batched=True)
    images = gen(items(pipes["tiny-instantid"], 2, pose={"yaw": 25}))
    assert len(images) == 2 and images[0].shape == (64, 64, 3)


def test_samples_and_photos_are_exclusive(pipes):
    pipe = pipes["tiny"]
    with pytest.raises(InvalidArgumentError, match="not both"):
        pipe(id_embeds=[emb(1, pipe)], samples=[Sample.of(emb(1, pipe))], progress=False)
    with pytest.raises(InvalidArgumentError, match="Sample"):
        pipe(samples=[emb(1, pipe)], progress=False)
