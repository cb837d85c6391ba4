"""Meter your own training with JouleLab: the same metering, run log and verdicts as the built-in
study, around your own code.

    import joulelab

    with joulelab.run("resnet18-finetune", logs="logs", labels={"mode": "transfer"}) as run:
        with run.phase("train"):
            for epoch in range(5):
                train_one_epoch()
                run.epoch(val_accuracy=evaluate())        # a point of the energy-to-accuracy curve
        with run.phase("test"):
            acc = evaluate(test_loader)
        run.result(accuracy=acc, inferences=len(test_set))

The run writes the run log the worker writes (run.json, events.jsonl, summary.json), so `joulelab
show`, `compare`, `export`, `plot`, MLflow, Prometheus and the lab read it as any other run. Also:
`@joulelab.metered("name")` for a function, and `run = joulelab.run(...); run.begin(); ...;
run.end()` for code that cannot use `with`.
"""

from __future__ import annotations

from engine.worker.user_run import Run, RunError, metered, run

__all__ = ["Run", "RunError", "metered", "run"]
