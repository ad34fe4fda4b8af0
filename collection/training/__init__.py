"""Fine-tuning jobs: a frozen dataset version trains a model (TRL's SFT or DPO trainer, PEFT for
LoRA, Accelerate for devices), an evaluation gate measures it (held-out loss, a judge in both
orders), and a promoted model enters the hub and the arena.

- ``data`` and ``hyper``: pure (no Django, no torch): the held-out split and the hyperparameters.
- ``runner`` and ``evaluation``: no Django: the trainers, checkpoints, outputs and the gate's math.
- ``services``, ``selectors``, ``tasks``, ``views``: the product around them.
"""
