"""`python -m engine.worker`: the worker process (engine.worker.main)."""

from engine.worker.main import main

if __name__ == "__main__":
    raise SystemExit(main())
