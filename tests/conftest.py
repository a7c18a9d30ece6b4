"""Test-wide settings."""

import torch

# The tests use tiny models: one thread is faster than two and immune to oversubscription
# when the end-to-end test's DVC subprocesses share the machine's cores.
torch.set_num_threads(1)
