"""Suite-wide settings."""
import torch

# The suite runs on 2-core CI machines, often beside Ray workers: one torch
# thread per process avoids oversubscription that makes tests 10x slower.
torch.set_num_threads(1)
