"""Training: the model-agnostic engine, schedules, checkpoints, configs."""
