"""LEVER's verifier as a language model (`verifier.model: lm`), as Ni et al. (2023) train it: a
classifier that reads the problem, the program and its execution result (what the program
returned or raised on the generated tests; `lever.execution_text`) and gives P(correct).

The classifier is the variant's base model (its `models/base` or GPTQ weights, without the
curriculum adapter) with a LoRA adapter and a linear head on the last token's final hidden
state, trained on MBPP train executions (sophia.verifier). LEVER fine-tunes a T5 or RoBERTa
verifier in full; a LoRA-adapted decoder is the small-model, offline equivalent. Inputs longer
than the window are cut from the left (the execution result stays): counted under the purpose
`verifier` and gated like every other prompt.

Folder: `verifier.json` (with `verifier_model: lm` and the base model's path), `adapter/` (PEFT),
`head.pt` (the head's weights).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sophia import lm
from sophia.errors import DataError

ADAPTER_DIR, HEAD_FILE, INFO_FILE = "adapter", "head.pt", "verifier.json"


class Classifier(torch.nn.Module):
    """A causal LM read at its last real token by a linear head: one logit per sequence."""

    def __init__(self, model: Any, hidden: int) -> None:
        super().__init__()
        self.model = model
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        last = out.hidden_states[-1]
        at = mask.sum(1) - 1  # right padding: the last attended position
        picked = last[torch.arange(last.shape[0], device=last.device), at]
        return self.head(picked.float()).squeeze(-1)


def hidden_size(model: Any) -> int:
    return int(model.config.hidden_size)


def encode(tok: Any, texts: Sequence[str], max_length: int, cuts: Any = None) -> list[list[int]]:
    """Token ids of each text, cut from the left to `max_length` (each cut counted in `cuts`)."""
    out = []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if cuts is not None:
            cuts.add("verifier", len(ids) > max_length)
        out.append(ids[-max_length:] or [tok.pad_token_id])
    return out


def batch(seqs: Sequence[list[int]], pad: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids.to(dev), mask.to(dev)


@torch.no_grad()
def probabilities(clf: Classifier, tok: Any, seqs: Sequence[list[int]], batch_size: int) -> list[float]:
    clf.eval()
    dev = next(clf.parameters()).device
    out: list[float] = []
    for b in range(0, len(seqs), batch_size):
        ids, mask = batch(seqs[b: b + batch_size], tok.pad_token_id, dev)
        out += torch.sigmoid(clf(ids, mask)).tolist()
    return out


def window(model: Any, requested: int | None) -> int:
    """The classifier's input length: the requested one, at most the model's own window."""
    own = int(getattr(model.config, "max_position_embeddings", 2048))
    return min(requested, own) if requested else own


class LMVerifier:
    model = "lm"
    kind = "lm"

    def __init__(self, clf: Classifier, tok: Any, max_length: int, batch_size: int, folder: Path | None = None) -> None:
        self.clf, self.tok, self.max_length, self.batch_size, self.folder = clf, tok, max_length, batch_size, folder

    def predict_texts(self, texts: Sequence[str], cuts: Any = None) -> list[float]:
        if not texts:
            return []
        return probabilities(self.clf, self.tok, encode(self.tok, texts, self.max_length, cuts), self.batch_size)

    def predict(self, problems: Sequence[Any], weight: str, cuts: Any = None) -> list[list[float]]:
        """P(correct) of every candidate of every problem (`rerank.Problem`s with executions)."""
        return [self.predict_texts(p.verifier_texts(), cuts) for p in problems]

    def save(self, folder: Path, info: dict[str, Any], base_model: Path) -> None:
        self.clf.model.save_pretrained(folder / ADAPTER_DIR)
        torch.save(self.clf.head.state_dict(), folder / HEAD_FILE)
        (folder / INFO_FILE).write_text(json.dumps({"verifier_model": self.model, "kind": self.kind,
                                                    "base_model": str(base_model), "max_length": self.max_length,
                                                    "batch_size": self.batch_size, **info}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, dev: torch.device | None = None) -> LMVerifier:
        from peft import PeftModel

        info = json.loads((Path(folder) / INFO_FILE).read_text())
        base = Path(info["base_model"])
        if not (base / "config.json").is_file():
            raise DataError(f"{folder}/{INFO_FILE}: its base model {base} is gone; retrain the verifier")
        model, tok = lm.load(base, dev)
        model = PeftModel.from_pretrained(model, Path(folder) / ADAPTER_DIR).eval()
        clf = Classifier(model, hidden_size(model))
        clf.head.load_state_dict(torch.load(Path(folder) / HEAD_FILE, map_location="cpu"))
        clf.head.to(next(model.parameters()).device)
        return cls(clf, tok, int(info["max_length"]), int(info["batch_size"]), Path(folder))


def load(folder: Path, dev: torch.device | None = None) -> Any:
    """The verifier in `folder`, whichever model it is (`verifier_features.Verifier` or `LMVerifier`)."""
    from sophia.evaluate.verifier_features import INFO_FILE as FEATURE_INFO
    from sophia.evaluate.verifier_features import Verifier

    path = Path(folder) / FEATURE_INFO
    if not path.is_file():
        raise DataError(f"{path}: missing; run the verifier stage for this model")
    info = json.loads(path.read_text())
    if info.get("verifier_model") == "lm" and info.get("kind") == "lm":
        return LMVerifier.load(Path(folder), dev)
    return Verifier.load(Path(folder))
