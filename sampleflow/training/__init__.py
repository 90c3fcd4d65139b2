"""One training loop for every learned method (diffusion samplers, SBTM, PINN, score models).

The math (losses) lives elsewhere; :class:`Trainer` runs the optimisation around a loss closure::

    from sampleflow.training import Trainer, TrainConfig

    def step(i):
        loss, log_z = my_loss(model, generator=g)       # a scalar with a graph
        return loss, {"logZ": log_z}

    trainer = Trainer(model, TrainConfig(iterations=2000), checkpoint_path="run/ckpt.pt",
                      extra_state={"config": dataclasses.asdict(cfg)}, generator=g)
    history = trainer.run(step)                          # Ctrl-C leaves a resumable checkpoint
    ...
    trainer.run(step, resume=True)                       # continues to the same budget
    with trainer.ema_weights():
        samples = sampler.sample(1000)
    history.to_csv("run/history.csv")
"""
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from .config import TrainConfig, lr_at
from .history import TrainHistory
from .trainer import Trainer, TrainingDivergedError

__all__ = ["TrainConfig", "Trainer", "TrainHistory", "TrainingDivergedError", "load_checkpoint", "lr_at",
           "CHECKPOINT_FORMAT"]
