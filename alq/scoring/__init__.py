"""Per-row scores from a head: uncertainty kernels, streamed head outputs, top-k."""
