"""Stage function: a float model (base, or merged GPTQ + adapter) → results/gguf/{model}/ + one MLflow run.

    model-f16.gguf, model-<type>.gguf  llama.cpp's converter output and its quantizations (gguf.types)
    Modelfile                          `ollama create` recipe: FROM the gguf.modelfile_type file, the
                                       project's prompt template, stop strings, num_ctx, greedy decoding
    parity.json                        every measurement against PyTorch, the gates and their verdicts
    gguf.json                          sizes, conversion/quantization times, sha256, the Ollama name
    convert.log                        the converter's own output
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from sophia import prompt, records, tracking
from sophia.atomic import atomic_dir
from sophia.config import validate_section
from sophia.errors import ConfigError, DataError, ParityError
from sophia.gguf import modelfile, parity, tools
from sophia.parity_gates import argmax_agreement, greedy_equal, max_abs
from sophia.provenance import sha256_file

log = logging.getLogger(__name__)


def gguf_name(kind: str) -> str:
    return f"model-{kind}.gguf"


def eval_texts(data_dirs: list[Path], max_samples: int) -> list[str]:
    """The first rows of every eval split (the data stage already shuffled them)."""
    texts = [records.text(r) for d in sorted(data_dirs) for path in sorted(d.glob("*/eval.jsonl"))
             for r in records.read(path)[:max_samples]]
    if not texts:
        raise DataError("gguf: no held-out rows in any eval.jsonl among --data (set n_eval > 0 for a dataset task)")
    return texts


def gate_failures(measured: dict[str, dict[str, Any]], gates: dict[str, Any]) -> list[str]:
    """Every check that misses its threshold, as 'which check: measured vs allowed (config key)'."""
    failures = []
    for kind, m in measured.items():
        where, name = f"gguf.parity.gates.{kind}", gguf_name(kind)
        if gates["tokens_equal"] and not m["tokens"]["equal"]:
            bad = m["tokens"]["mismatches"]
            failures.append(f"{name}: llama.cpp tokenizes {len(bad)} of {m['tokens']['texts']} texts differently "
                            f"from the HF tokenizer (first: {bad[0]['text']!r} at token {bad[0]['first_difference']})"
                            " (gguf.parity.gates.tokens_equal=true)")
        g = gates.get(kind)
        if g is None:
            continue
        g = {"max_abs": None, "argmax_agreement": 0.0, "greedy_equal": False, "max_ppl_increase": None, **g}
        failures += [f for f in (max_abs(name, m["logits_max_abs"], g["max_abs"], where),
                                 argmax_agreement(name, m["argmax_agreement"], g["argmax_agreement"], where),
                                 greedy_equal(name, m["greedy"], g["greedy_equal"], where)) if f]
        if g["max_ppl_increase"] is not None and m["ppl_increase"] > g["max_ppl_increase"]:
            failures.append(f"{name}: perplexity +{100 * m['ppl_increase']:.1f}% vs PyTorch > "
                            f"{where}.max_ppl_increase={g['max_ppl_increase']}")
    return failures


def check_spec(gspec: dict[str, Any]) -> None:
    if gspec["modelfile_type"] not in gspec["types"]:
        raise ConfigError(f"gguf.modelfile_type: {gspec['modelfile_type']} is not among gguf.types "
                          f"({', '.join(gspec['types'])})")


def run_stage(spec: dict[str, Any], model_id: str, model_dir: Path, data_dirs: list[Path], out: Path,
              threads: int = 2) -> dict[str, Any]:
    gspec = validate_section(spec["gguf"], "gguf", "gguf")
    check_spec(gspec)
    pre = spec.get("pre_tokenizer")
    par = gspec["parity"]
    texts = eval_texts(data_dirs, par["eval"]["max_samples"])
    src = tools.converter_src(gspec["llama_cpp_src"])
    inputs = {"model": model_dir, **{f"data.{d.name}": d for d in data_dirs}}
    params = {"model": model_id, "gguf": gspec, "pre_tokenizer": pre, "llama_cpp": tools.llama_cpp_version()}
    with tracking.stage_run("gguf", model_id, params, inputs=inputs) as run, atomic_dir(out) as tmp:
        f16 = tmp / gguf_name("f16")
        seconds = {"convert_s": tools.convert(src, model_dir, f16, pre, tmp / "convert.log")}
        for kind in gspec["types"]:
            if kind != "f16":
                seconds[f"quantize_s.{kind}"] = tools.quantize(f16, tmp / gguf_name(kind), kind, threads)
        if "f16" not in gspec["types"]:
            f16.unlink()
        tok, ref = parity.torch_reference(model_dir, spec["reference_prompts"], texts, par["logit_texts"],
                                          par["greedy_tokens"], par["eval"]["max_length"])
        torch_ppl = math.exp(ref["nll"] / ref["count"])
        measured = {}
        token_texts = [*texts[:8], *(prompt.build_prompt(p) for p in spec["reference_prompts"])]
        for kind in gspec["types"]:
            m = parity.measure(tmp / gguf_name(kind), tok, ref, par["greedy_tokens"], token_texts, threads)
            m["ppl_increase"] = m["ppl"] / torch_ppl - 1
            measured[kind] = m
            log.info("%s: max |logit diff| %.3g, argmax %.3f, ppl %.3f (PyTorch %.3f), greedy equal %s, tokens %s",
                     kind, m["logits_max_abs"], m["argmax_agreement"], m["ppl"], torch_ppl, m["greedy_equal"],
                     "equal" if m["tokens"]["equal"] else "DIFFER")
        failures = gate_failures(measured, par["gates"])
        report = {"model": model_id, "pre_tokenizer": pre or "converter detection", "torch_ppl": torch_ppl,
                  "eval_texts": len(ref["eval_ids"]), "greedy_prompt_ids": ref["prompt_ids"],
                  "greedy_tokens_torch": ref["greedy"], "types": measured, "gates": par["gates"],
                  "failures": failures}
        (tmp / "parity.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        run.log_artifact(tmp / "parity.json")
        run.log_metrics({**seconds, "torch_ppl": torch_ppl, **metrics(measured)})
        if failures:
            raise ParityError("gguf parity gate failed:\n  " + "\n  ".join(failures))
        summary = write_modelfile(tmp, model_id, gspec, seconds)
        run.log_metrics({f"bytes.{k}": v["bytes"] for k, v in summary["files"].items()})
        run.write_record(tmp, "gguf", model_id)
        tracking.log_output(run, tmp, out, ("parity.json", "gguf.json", "Modelfile", "convert.log"))
    log.info("%s: %s; ollama create %s -f %s", model_id, ", ".join(gspec["types"]), summary["ollama_name"],
             out / "Modelfile")
    return report


def write_modelfile(tmp: Path, model_id: str, gspec: dict[str, Any], seconds: dict[str, float]) -> dict[str, Any]:
    kind = gspec["modelfile_type"]
    facts = tools.vocab_facts(tmp / gguf_name(kind))
    n_ctx = gspec["num_ctx"] or int(facts["n_ctx_train"])  # type: ignore[call-overload]
    name = modelfile.ollama_name(model_id, kind)
    text = modelfile.modelfile(gguf_name(kind), n_ctx, facts["fim"],  # type: ignore[arg-type]
                               title=f"{name}: Sophia's {model_id} model, {kind}")
    (tmp / "Modelfile").write_text(text, encoding="utf-8")
    files = {kind: {"file": gguf_name(kind), "bytes": (tmp / gguf_name(kind)).stat().st_size,
                    "sha256": sha256_file(tmp / gguf_name(kind))} for kind in gspec["types"]}
    summary = {"model": model_id, "ollama_name": name, "modelfile_type": kind, "num_ctx": n_ctx,
               "fill_in_the_middle": facts["fim"] is not None, "files": files, **seconds,
               "llama_cpp_python": tools.llama_cpp_version()}
    (tmp / "gguf.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def metrics(measured: dict[str, dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, m in measured.items():
        out |= {f"{kind}.logits_max_abs": m["logits_max_abs"], f"{kind}.argmax_agreement": m["argmax_agreement"],
                f"{kind}.ppl": m["ppl"], f"{kind}.ppl_increase": m["ppl_increase"],
                f"{kind}.greedy_equal": float(m["greedy_equal"]), f"{kind}.tokens_equal": float(m["tokens"]["equal"]),
                f"{kind}.bytes": m["bytes"]}
    return out


def main() -> None:
    from sophia.cli import load_spec, parse, parser

    p: argparse.ArgumentParser = parser("Convert a float model to GGUF with llama.cpp, quantize, check parity "
                                        "(stage gguf).", threads=2)
    p.add_argument("--model-id", required=True)
    p.add_argument("--model", required=True, type=Path, help="float model directory (base or merged)")
    p.add_argument("--data", nargs="+", type=Path, required=True, help="data stage outputs (their eval splits)")
    args = parse(p)
    run_stage(load_spec(args.spec), args.model_id, args.model, args.data, args.out, args.threads)
