"""Datasets as MLflow `mlflow.data` datasets (source, digest, schema, row count), logged as inputs
of the runs that read them, so the runs table's *Dataset* column says what each run trained or was
scored on. Contexts follow MLflow's convention: `training`, `evaluation` (and `calibration`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

SPLIT_CONTEXT = {"train": "training", "eval": "evaluation"}


def from_records(records: Sequence[Mapping[str, Any]], name: str, source: str | Path) -> Any:
    """An `mlflow.data` PandasDataset of JSON-like rows; nested values are kept as JSON text so the
    schema stays flat and the digest stable."""
    import mlflow.data
    import pandas as pd

    rows = [{k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v
             for k, v in r.items()} for r in records]
    return mlflow.data.from_pandas(pd.DataFrame(rows), source=_source(source), name=name)


def from_jsonl(path: str | Path, name: str, source: str | Path | None = None) -> Any:
    """A `.jsonl` split (e.g. results/data/alpaca/instruct/train.jsonl) as an MLflow dataset."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    return from_records(records, name, source or path.resolve())


def data_splits(data_dir: str | Path, tasks: Iterable[str] | None = None,
                splits: Iterable[str] = ("train", "eval"), final: str | Path | None = None) -> list[tuple[Any, str]]:
    """(dataset, context) for each task split of a data stage output. `final` is where the folder
    lives once the stage finishes (the dataset's source); `data_dir` where the files are now."""
    data_dir = Path(data_dir)
    final = Path(final or data_dir).resolve()
    chosen = sorted(tasks) if tasks is not None else sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    out = []
    for task in chosen:
        for split in splits:
            f = data_dir / task / f"{split}.jsonl"
            if f.is_file():
                ds = from_jsonl(f, f"{final.name}/{task}/{split}", final / task / f"{split}.jsonl")
                out.append((ds, SPLIT_CONTEXT.get(split, split)))
    return out


def _source(source: str | Path) -> Any:
    """Local files and folders → MLflow's local artifact source; `hf:<id>` → its Hugging Face
    source (never downloaded here); anything else is recorded as given."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    text = str(source)
    if text.startswith("hf:"):
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        return HuggingFaceDatasetSource(path=text[3:])
    if "://" in text or text.startswith("/"):
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(text)
    return CodeDatasetSource({"source": text})


def dataset_inputs(datasets: Iterable[tuple[Any, str]]) -> list[Any]:
    """`(mlflow.data dataset, context)` pairs → DatasetInput entities for `log_inputs`."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return [DatasetInput(ds._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)])
            for ds, context in datasets]
