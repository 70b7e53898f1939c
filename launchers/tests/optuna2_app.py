"""A trivial Hydra app (no torch, no config files) for the second environment's tests
(``test_optuna2_env.py``): they copy it to a temporary folder and run it there with ``.venv-optuna2``'s
python, under Hydra's Optuna sweeper and our launcher. Its objective is a pure function of its parameters, so
a test can compute what each trial should have returned."""

import json
import os

import hydra
from hydra.core.hydra_config import HydraConfig

OBJECTIVE_FILE = "objective.json"  # in each job's folder: what the job returned, written by the job itself


def _condor_job_id() -> str | None:
    """ "cluster.proc" from the job ad HTCondor gives each job (None when not run by HTCondor)."""
    path = os.environ.get("_CONDOR_JOB_AD")
    if not path:
        return None
    with open(path) as f:
        ad = dict(line.split(" = ", 1) for line in f.read().splitlines() if " = " in line)
    return f"{ad['ClusterId']}.{ad['ProcId']}"


def objective(x: float, n: int, kind: str) -> float:
    return (x - 0.3) ** 2 + 0.25 * n + {"flat": 0.0, "steep": 1.0}[kind]


@hydra.main(version_base=None, config_path=None)
def main(cfg) -> float:
    value = objective(float(cfg.x), int(cfg.n), str(cfg.kind))
    params = {"x": cfg.x, "n": cfg.n, "kind": cfg.kind}
    with open(os.path.join(HydraConfig.get().runtime.output_dir, OBJECTIVE_FILE), "w") as f:
        json.dump({"params": params, "value": value, "condor_job": _condor_job_id()}, f)
    return value


if __name__ == "__main__":
    main()
