"""Random streams keyed by what is computed, not by which process computes it.

A global minibatch is split into *chunks* of ``batch_gpu`` samples: one accumulation round of one
process. Before every round the objective calls :meth:`RandomStreams.round`, which seeds torch (CPU and
the device), numpy and ``random`` from ``(seed, minibatch, phase, global chunk index)``; the global
index of round ``r`` of process ``p`` with ``R`` rounds per process is ``p * R + r``, which is also the
position of its reals in the sampler's global minibatch. Latents, labels, style mixing, noise inputs and
the augmentation draws of a chunk are therefore the same whether one process runs all chunks in turn or
N processes run a share each: with a fixed ``training.batch_gpu`` the process count changes only the
order of floating-point reductions. Between rounds (optimizer steps, the methods' hooks) every process
draws from a stream shared by all processes, reseeded at each minibatch and each phase end.

Because every stream is reseeded from counters, the random state of a checkpoint does not matter for
what comes next: resuming is exact with any process count that keeps the chunk size.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def stream_seed(seed: int, *key: object) -> int:
    """A 63-bit seed for ``key`` under the run's ``seed`` (stable across processes, hosts and versions)."""
    text = "/".join(str(part) for part in (seed, *key))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def seed_all(value: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``value``."""
    random.seed(value)
    np.random.seed(value % (1 << 32))
    torch.manual_seed(value)


class RandomStreams:
    """The loop calls :meth:`begin_minibatch` before each minibatch; objectives call :meth:`round` before
    each accumulation round and :meth:`shared` where work common to all processes follows."""

    def __init__(self, seed: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.batch_idx = 0
        self._shared_count = 0  # shared streams entered in this minibatch (each gets its own)

    def begin_minibatch(self, batch_idx: int) -> None:
        self.batch_idx, self._shared_count = batch_idx, 0
        self.shared("minibatch")

    def shared(self, tag: str) -> None:
        """A stream every process draws identically (the work that is not split into chunks)."""
        self._shared_count += 1
        seed_all(stream_seed(self.seed, self.batch_idx, "shared", tag, self._shared_count))

    def round(self, phase: str, index: int, rounds: int) -> None:
        """The stream of this process's round ``index`` of ``rounds`` in ``phase`` of the minibatch."""
        chunk = self.rank * rounds + index
        seed_all(stream_seed(self.seed, self.batch_idx, phase, chunk))
