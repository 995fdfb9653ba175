"""Face-recognition training and scoring for synthetic datasets: ``facegen fr-train`` and ``facegen fr-eval``.

- :mod:`facegen.fr.protocol`: the verification protocol the field reports (insightface's)
- :mod:`facegen.fr.binfile`: insightface ``.bin`` sets read without executing anything
- :mod:`facegen.fr.pairs`: pair sets (``.bin``, LFW ``pairs.txt``, drawn from identity folders)
- :mod:`facegen.fr.evaluate`: an encoder or a trained run scored on pair sets
- :mod:`facegen.fr.recipes`, :mod:`facegen.fr.heads`, :mod:`facegen.fr.data`, :mod:`facegen.fr.train`: the trainer

The networks a run produces (IResNet) are in :mod:`facegen.id.iresnet`, so a trained run loads
as an encoder (``--encoder RUN_DIR``) anywhere facegen takes one.
"""
