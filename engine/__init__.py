"""VSDream engine: Variational Score Distillation text-to-3D as a library and CLI."""
__version__ = "0.1.0"

import os as _os

# Apple GPUs: ops MPS lacks run on the CPU instead of failing; torch reads this when it loads,
# and every engine entry point imports this package before torch
_os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
