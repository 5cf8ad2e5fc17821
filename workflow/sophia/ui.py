"""The MLflow UI link a user opens after `make run`: straight to the study's runs table.

    python -m sophia.ui [--port 5000] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse

from sophia.tracking.store import tracking_uri
from sophia.tracking.views import BY_MODEL, experiment_id, runs_url


def main() -> None:
    p = argparse.ArgumentParser(description="Print the MLflow UI link to the study's runs.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--experiment", help="experiment name (default: $MLFLOW_EXPERIMENT_NAME or sophia)")
    args = p.parse_args()
    base = f"http://{args.host}:{args.port}"
    exp = experiment_id(name=args.experiment)
    if exp is None:
        print(f"  {base}  (no runs logged yet in {tracking_uri()})")
    else:
        print(f"  {runs_url(base, exp)}")
        print(f"  evaluation runs grouped by model variant: {runs_url(base, exp, BY_MODEL)}")


if __name__ == "__main__":
    main()
