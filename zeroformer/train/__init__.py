"""The one trainer, shared by every model family.

    from zeroformer.train import Trainer, TrainConfig, Task, LMTask
    Trainer(task, TrainConfig(max_steps=100), out="runs/x").fit()      # .fit(resume=True)

config.py (TrainConfig), schedules.py (noam, warmup+cosine, constant), optim.py (AdamW groups),
losses.py (cross-entropy with label smoothing), data.py (deterministic batches), task.py (Task
protocol), trainer.py (the loop, checkpoints, exact resume), progress.py (tqdm bar).
"""

from .config import TrainConfig
from .task import LMTask, Task
from .trainer import LossDiverged, Trainer

__all__ = ["TrainConfig", "Task", "LMTask", "Trainer", "LossDiverged"]
