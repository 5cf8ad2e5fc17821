"""Benchmark: GPTQ compression ratio and perplexity cost for several group sizes.

Runs on the outputs of `make run` (the embedded model and its data) or any other base model
and data directories; writes a JSON file and logs one MLflow run (experiment
`sophia-benchmarks` unless MLFLOW_EXPERIMENT_NAME says otherwise).

    .venv/bin/python benchmarks/quantize_group_sizes.py --group-sizes 32 64 128 -1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

from record import save
from sophia import checkpoint, lm
from sophia.config import validate
from sophia.quantize import gptq
from sophia.quantize.stage import calibration_texts, eval_texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("config.yaml"), help="quantize settings besides group size")
    p.add_argument("--base", type=Path, default=Path("results/models/base"))
    p.add_argument("--data", type=Path, nargs="+", default=sorted(Path("results/data").glob("*")))
    p.add_argument("--group-sizes", type=int, nargs="+", default=[32, 64, 128, -1])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quantize_group_sizes.json"))
    args = p.parse_args()

    import yaml

    spec = validate(yaml.safe_load(args.config.read_text()))["quantize"]
    by_name = {d.name: d for d in args.data}
    calibration = calibration_texts(by_name, spec["calibration"], spec["seed"])
    splits = eval_texts(by_name, spec["eval"]["max_samples"])
    texts = [t for v in splits.values() for t in v]
    dev = lm.device()

    model, tok = lm.load(args.base, dev)
    ppl_base = lm.perplexity(model, tok, texts, spec["eval"]["max_length"])["ppl"]
    del model
    batches = gptq.calibration_batches(tok, calibration, spec["calibration"]["max_length"])
    base_bytes = checkpoint.size_on_disk(args.base)["weights_bytes"]

    rows = []
    for gs in args.group_sizes:
        gptq.check_group_size(args.base, gs)
        with tempfile.TemporaryDirectory() as tmp:
            cost = gptq.quantize(args.base, Path(tmp), batches, {**spec, "group_size": gs}, dev)
            model, _ = lm.load(Path(tmp), dev)
            ppl = lm.perplexity(model, tok, texts, spec["eval"]["max_length"])["ppl"]
            size = checkpoint.size_on_disk(Path(tmp))["weights_bytes"]
            del model
        rows.append({"group_size": gs, "bits": spec["bits"], "weights_bytes": size, "size_ratio": base_bytes / size,
                     "ppl": ppl, "ppl_delta_pct": 100 * (ppl / ppl_base - 1), "seconds": cost["quantize_seconds"]})
        print(json.dumps(rows[-1]))

    result = {"base": str(args.base), "base_weights_bytes": base_bytes, "ppl_base": ppl_base,
              "device": str(dev), "eval_texts": len(texts), "rows": rows}
    metrics = {"ppl_base": ppl_base}
    for r in rows:
        g = "per_row" if r["group_size"] == -1 else f"g{r['group_size']}"
        metrics.update({f"{g}.size_ratio": r["size_ratio"], f"{g}.ppl_delta_pct": r["ppl_delta_pct"],
                        f"{g}.seconds": r["seconds"]})
    save(args.out, result, name="quantize_group_sizes", params={"quantize": spec, "group_sizes": args.group_sizes},
         metrics=metrics)


if __name__ == "__main__":
    main()
