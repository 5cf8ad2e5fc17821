"""LEVER's verifier as a feature model (`verifier.model: features`): P(correct | problem, program,
execution result) from scikit-learn on the hand-made features of `lever.features`.

`logistic` (standardised features, L2 logistic regression) or `gbt` (histogram gradient-boosted
trees). When the training candidates are all wrong (or all right), as for a model that never
solves a train problem, nothing can be learnt: the verifier is then the constant base rate,
Laplace-smoothed so that it is never 0 (which would erase P_LM from every LEVER score), says so
(`kind: constant`), and LEVER reduces to likelihood reranking."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sophia.errors import DataError
from sophia.evaluate import rerank
from sophia.evaluate.lever import FEATURES

KINDS = ("logistic", "gbt")
MODEL_FILE, INFO_FILE = "verifier.joblib", "verifier.json"


def matrix(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    return np.array([[float(r[f]) for f in FEATURES] for r in rows], dtype=np.float64).reshape(len(rows), len(FEATURES))


class Verifier:
    model = "features"

    def __init__(self, kind: str, estimator: Any = None, base_rate: float | None = None,
                 folder: Path | None = None) -> None:
        self.kind, self.estimator, self.base_rate, self.folder = kind, estimator, base_rate, folder

    @classmethod
    def fit(cls, kind: str, rows: Sequence[Mapping[str, float]], labels: Sequence[bool], seed: int) -> Verifier:
        if kind not in KINDS:
            raise ValueError(f"verifier.kind must be one of {KINDS}, got {kind!r}")
        y = np.array([bool(v) for v in labels], dtype=int)
        if len(y) == 0:
            raise DataError("verifier: no training candidates")
        if y.min() == y.max():
            return cls("constant", base_rate=float((y.sum() + 1) / (len(y) + 2)))
        if kind == "logistic":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier

            est = HistGradientBoostingClassifier(random_state=seed)
        est.fit(matrix(rows), y)
        return cls(kind, est)

    def predict(self, problems: Sequence[rerank.Problem], weight: str, cuts: Any = None) -> list[list[float]]:
        """P(correct) of every candidate of every problem (the interface `rerank.attach` calls)."""
        return [self.predict_rows(rerank.features(p, weight)) for p in problems]

    def predict_rows(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        if not rows:
            return []
        if self.estimator is None:
            return [float(self.base_rate)] * len(rows)
        return [float(p) for p in self.estimator.predict_proba(matrix(rows))[:, 1]]

    def save(self, folder: Path, info: Mapping[str, Any]) -> None:
        import joblib

        if self.estimator is not None:
            joblib.dump(self.estimator, folder / MODEL_FILE)
        head = {"verifier_model": self.model, "kind": self.kind, "base_rate": self.base_rate,
                "features": list(FEATURES)}
        (folder / INFO_FILE).write_text(json.dumps({**head, **info}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Verifier:
        import joblib

        path = Path(folder) / INFO_FILE
        if not path.is_file():
            raise DataError(f"{path}: missing; run the verifier stage for this model")
        info = json.loads(path.read_text())
        if info.get("features") != list(FEATURES):
            raise DataError(f"{path}: trained on other features than this code computes; retrain it")
        if info["kind"] == "constant":
            return cls("constant", base_rate=info["base_rate"], folder=Path(folder))
        return cls(info["kind"], joblib.load(Path(folder) / MODEL_FILE), folder=Path(folder))
