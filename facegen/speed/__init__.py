"""The fast path the pipelines use: :mod:`facegen.speed.engine` (exact engine options, the
LoRA-fusion guard, batching helpers; :mod:`facegen.speed.torch_compile` for ``torch.compile``)
and :mod:`facegen.speed.presets` (named speed settings, pixel-changing ones flagged).

Layer: below ``facegen.pipelines``, above ``facegen.adapters``; nothing here imports a pipeline.
"""
