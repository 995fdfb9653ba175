"""facegen: generative face synthesis on face-identity embeddings.

Importing facegen needs none of the optional extras (gradio, ray, insightface) and loads
no model: heavy modules are imported where they are used.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
