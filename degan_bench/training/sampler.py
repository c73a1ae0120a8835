"""Deterministic, resumable minibatches of real images.

The sampler walks seeded per-epoch permutations of the training set. Its whole state is a few
integers plus the mirror generator's state, so a checkpoint records exactly which image comes next
and a resumed run sees the same reals as an uninterrupted one.

Mirroring follows the recipe's ``data.mirror``:

- ``random``: each real is flipped with p=0.5 per minibatch (TF StyleGAN2 ``mirror_augment``);
- ``double``: the set is doubled with a flipped copy of every image (stylegan2-ada ``--mirror``);
  item ``i >= N`` is image ``i - N`` flipped;
- ``none``: no flips.

Small sets (the 100-shot ones) are moved to the device once; large ones stay memory-mapped on the
CPU and are gathered a minibatch ahead in a background thread.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

#: datasets up to this many bytes are copied to the device once
DEVICE_RESIDENT_BYTES = 2 << 30


class RealImageSampler:
    def __init__(
        self,
        images: np.ndarray,
        *,
        batch: int,
        seed: int,
        mirror: str,
        device: torch.device,
        labels: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 NHWC images, got {images.dtype} {images.shape}")
        if batch % world_size:
            raise ValueError(f"batch {batch} is not divisible by world size {world_size}")
        self.num_images = int(images.shape[0])
        self.mirror = mirror
        self.length = self.num_images * (2 if mirror == "double" else 1)
        self.batch = batch
        self.seed = seed
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0
        self._perm = self._permutation(0)
        self._flip_gen = torch.Generator().manual_seed(seed * 7919 + 17)
        self._labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if images.nbytes <= DEVICE_RESIDENT_BYTES:
            self._images: Any = torch.from_numpy(np.array(images, copy=True)).to(device)
            self._executor = None
        else:
            self._images = images
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reals")
        self._pending: tuple[dict[str, Any], Future] | None = None

    # -- index bookkeeping ---------------------------------------------------------------------
    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=gen)

    def _take_indices(self, count: int) -> torch.Tensor:
        chunks = []
        while count > 0:
            take = min(count, self.length - self.position)
            chunks.append(self._perm[self.position : self.position + take])
            self.position += take
            count -= take
            if self.position == self.length:
                self.epoch += 1
                self.position = 0
                self._perm = self._permutation(self.epoch)
        return torch.cat(chunks)

    def state_dict(self) -> dict[str, Any]:
        """State as of the last minibatch handed out (prefetched ones do not count)."""
        if self._pending is not None:
            return dict(self._pending[0])
        return self._own_state()

    def _own_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "flip_rng": self._flip_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = None
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._perm = self._permutation(self.epoch)
        self._flip_gen.set_state(state["flip_rng"])

    # -- batches ---------------------------------------------------------------------------------
    def _plan(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of this rank's share of the next global minibatch, and its flip mask."""
        indices = self._take_indices(self.batch)
        if self.mirror == "random":
            flips = torch.rand(self.batch, generator=self._flip_gen) < 0.5
        else:
            flips = indices >= self.num_images
            indices = indices % self.num_images
        share = self.batch // self.world_size
        sl = slice(self.rank * share, (self.rank + 1) * share)
        return indices[sl], flips[sl]

    def _gather(self, indices: torch.Tensor, flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(self._images, torch.Tensor):
            images = self._images[indices.to(self._images.device)]
        else:
            images = torch.from_numpy(np.asarray(self._images[indices.numpy()]))  # one gather
            if self.device.type == "cuda":
                images = images.pin_memory().to(self.device, non_blocking=True)
            else:
                images = images.to(self.device)
        images = images.permute(0, 3, 1, 2).to(torch.float32).div_(127.5).sub_(1.0)
        flips = flips.to(images.device)
        if bool(flips.any()):
            images = torch.where(flips[:, None, None, None], images.flip(3), images)
        labels = None if self._labels is None else self._labels[indices].to(self.device)
        return images.contiguous(), labels

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next minibatch: float32 NCHW images in [-1, 1] on the device, and labels (or None)."""
        if self._executor is None:
            return self._gather(*self._plan())
        if self._pending is None:
            state = self._own_state()
            self._pending = (state, self._executor.submit(self._gather, *self._plan()))
        _state, future = self._pending
        result = future.result()
        # Plan the following minibatch now; its state snapshot is what a checkpoint must record.
        state = self._own_state()
        self._pending = (state, self._executor.submit(self._gather, *self._plan()))
        return result

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
