"""Weight selection for Hugging Face ``transformers`` models (Llama/Mistral/Qwen2/Qwen3,
Mixtral/Qwen2-MoE/Qwen3-MoE, Phi-3, Gemma/Gemma2/Gemma3, GPT-NeoX/Pythia, OPT, GPT-2, T5/mT5,
BERT/RoBERTa/XLM-R/DistilBERT, ViT; the list: ``SUPPORTED_MODEL_TYPES``).

``weightselect.hf.select(teacher, student, method=..., layers=..., seed=...)`` mirrors
:func:`weightselect.select` for timm models; the result's ``save(folder)`` writes a folder that
``AutoModelForCausalLM.from_pretrained`` / ``AutoModel.from_pretrained`` loads. transformers is an
optional dependency (``pip install weightselect[hf]``), imported only inside the functions that
need it, so importing this package (e.g. for :func:`is_hf_teacher`) does not import it.
"""
from __future__ import annotations

from weightselect._lazy import lazy_package

__all__ = ["select", "HFSelectionResult", "is_hf_teacher", "SUPPORTED_MODEL_TYPES", "MANIFEST"]

_LAZY = {  # torch loads when a name is first asked for (the command line starts without it)
    "SUPPORTED_MODEL_TYPES": "weightselect.hf.families",
    "MANIFEST": "weightselect.hf.select",
    "HFSelectionResult": "weightselect.hf.select",
    "select": "weightselect.hf.select",
    "is_hf_teacher": "weightselect.hf.sources",
}


lazy_package(__name__, _LAZY)
