"""This process's place under a launcher (``accelerate launch`` / ``torchrun`` set RANK / WORLD_SIZE / LOCAL_RANK)."""
from __future__ import annotations

import os


def launched_processes() -> tuple[int, int]:
    """``(rank, world size)`` of this process as ``accelerate launch`` / ``torchrun`` set them; ``(0, 1)`` alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Whether this process writes shared outputs (models, histories): rank 0, or the only process."""
    return launched_processes()[0] == 0


def local_rank() -> int:
    """This process's index on its machine under a launcher (``LOCAL_RANK``); 0 alone."""
    return int(os.environ.get("LOCAL_RANK", 0))
