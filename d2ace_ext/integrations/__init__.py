"""The sampler inside the trainers users already use.

- :mod:`d2ace_ext.integrations.lightning`: :class:`SelectionCallback` for PyTorch
  Lightning (``pip install d2ace_ext[lightning]``);
- :mod:`d2ace_ext.integrations.accelerate`: :func:`prepare_loader` for Hugging Face
  Accelerate (``pip install d2ace_ext[accelerate]``);
- :mod:`d2ace_ext.integrations.resume`: :class:`LoopCheckpoint`, the sampler state as
  the training loop has consumed it (exact mid-epoch resume despite prefetching).

Each submodule imports its trainer itself, so importing this package needs neither.
"""

from .resume import LoopCheckpoint, rewound_state

__all__ = ["LoopCheckpoint", "rewound_state"]
