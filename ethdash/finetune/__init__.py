"""Fine-tuning LoRA adapters toward human vote distributions, in background runs.

- `config.py`: a run's settings and their validation (done before any process starts);
- `data.py`: training examples and the seeded held-out part (pure);
- `train.py`: the training loop (the driver with the side effects);
- `runs.py`: run folders and detached processes (start, status, cancel, resume);
- `worker.py`: the entry point of a run's own process.
"""
