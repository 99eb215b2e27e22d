"""Test-wide settings: one torch thread per process.

The suite is many small models; on a 2-core machine shared with other work, torch's OpenMP
threads spin-wait on each other and a test can take 30x longer with 2 threads than with 1.
Subprocesses started by the CLI tests inherit OMP_NUM_THREADS.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
