"""The ML core: plain functions and dataclass configs, no Django. Callable from a worker, a
notebook or a test. Heavy imports (torch, transformers) happen inside the modules that need them."""

import os

# Before huggingface_hub is first imported (it reads this once): no usage reports from a worker,
# which runs offline anyway. A model download (register_base_model --hf) still works.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
