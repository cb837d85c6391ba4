"""The worker process's side: one process runs one spec, meters it and writes its log (python -m engine.worker)."""
