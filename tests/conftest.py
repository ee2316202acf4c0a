"""Shared test settings: two threads (the CI machine has two cores), no network for weights."""
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# File digests remembered by the tests stay out of the user's cache (weightselect.io.hash_cache_dir).
os.environ.setdefault("WEIGHTSELECT_CACHE_DIR", tempfile.mkdtemp(prefix="weightselect-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(2)
