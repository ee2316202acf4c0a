"""Weight selection for Hugging Face ``transformers`` models (Llama/Mistral/Qwen2, GPT-2, BERT, ViT).

``weightselect.hf.select(teacher, student, method=..., layers=..., seed=...)`` mirrors
:func:`weightselect.select` for timm models; the result's ``save(folder)`` writes a folder that
``AutoModelForCausalLM.from_pretrained`` / ``AutoModel.from_pretrained`` loads. transformers is an
optional dependency (``pip install weightselect[hf]``), imported only inside the functions that
need it, so importing this package (e.g. for :func:`is_hf_teacher`) does not import it.
"""
from __future__ import annotations

from weightselect.hf.families import SUPPORTED_MODEL_TYPES
from weightselect.hf.select import MANIFEST, HFSelectionResult, select
from weightselect.hf.sources import is_hf_teacher

__all__ = ["select", "HFSelectionResult", "is_hf_teacher", "SUPPORTED_MODEL_TYPES", "MANIFEST"]
