"""A worker that reports whether torch was imported before its first line ran."""

import sys

print(f"TORCH_PRELOADED={'torch' in sys.modules}", flush=True)
