"""Video: decode → track faces → per-frame edit (the edit pipelines) → encode, audio kept.

    from facegen.pipelines.swap import FaceSwapPipeline
    from facegen.video.pipeline import VideoEditPipeline

    job = FaceSwapPipeline.from_preset("tiny").job(["me.jpg"], consent=True)   # the photo swap's own job
    result = VideoEditPipeline(job)("clip.mp4", "out.mp4", seed=7)
    result.tracks, result.stability

Every photo job runs on a video this way (``pipe.job(...)`` of the swap — diffusion or
inswapper —, aging and restoration pipelines, GFPGAN pre-pass included); making the job checks
consent, as the photo call does.

Modules: :mod:`.container` (PyAV probe, upright frames, segment encoding, final MP4 with the
audio packets copied), :mod:`.tracks` (box overlap + identity association), :mod:`.smooth`
(One-Euro landmarks, mask average, temporal guidance), :mod:`.plans` (which tracks the job edits, resumable),
:mod:`.segments` (atomic, resumable segments), :mod:`.pipeline`
(:class:`~facegen.video.pipeline.VideoEditPipeline`: which tracks the job edits, frame by frame), :mod:`.provenance` (container tags, C2PA
on MP4, keyframe watermark, inspect), :mod:`.limits` (bad input, size and length limits),
:mod:`.cli` (the CLI's video routing). Needs ``pip install 'facegen[video]'`` (PyAV).
"""
