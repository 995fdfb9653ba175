"""Video: decode → track faces → per-frame edit (the edit pipelines) → encode, audio kept.

    from facegen.pipelines.swap import FaceSwapPipeline
    from facegen.video.jobs import SwapJob
    from facegen.video.pipeline import VideoEditPipeline

    job = SwapJob(FaceSwapPipeline.from_preset("tiny"), ["me.jpg"])
    result = VideoEditPipeline(job)("clip.mp4", "out.mp4", seed=7)
    result.tracks, result.stability

Modules: :mod:`.container` (PyAV probe, upright frames, segment encoding, final MP4 with the
audio packets copied), :mod:`.tracks` (box overlap + identity association), :mod:`.smooth`
(One-Euro landmarks, mask average, temporal guidance), :mod:`.jobs` (swap / restore / age rules
for tracks), :mod:`.segments` (atomic, resumable segments), :mod:`.pipeline`
(:class:`~facegen.video.pipeline.VideoEditPipeline`), :mod:`.provenance` (container tags, C2PA
on MP4, keyframe watermark, inspect), :mod:`.limits` (bad input, size and length limits),
:mod:`.cli` (the CLI's video routing). Needs ``pip install 'facegen[video]'`` (PyAV).
"""
