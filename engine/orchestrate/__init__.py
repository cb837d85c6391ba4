"""Running plans: the worker process, the plan runner, plan files, presets, followed runs and Slurm."""
