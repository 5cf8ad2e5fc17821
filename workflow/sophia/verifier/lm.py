"""Training LEVER's LM verifier (`verifier.model: lm`): LoRA on the variant's base model plus a
linear head, binary cross-entropy on (problem, program, execution result) -> passes the gold tests.

Positives are rare for a small model, so the loss weighs them by negatives / positives (at most
`max_pos_weight`); with one class only nothing can be learnt and the caller keeps the constant
verifier instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sophia import lm
from sophia.evaluate.verifier_lm import Classifier, LMVerifier, batch, encode, hidden_size, window

MAX_POS_WEIGHT = 20.0


def linear_layers(model: Any) -> list[str]:
    """Names of every linear layer but the output head, float or quantized (a GPTQ checkpoint's
    layers are gptqmodel's QuantLinear, which peft's "all-linear" shortcut does not select)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if "Linear" in type(module).__name__ and name and not name.endswith("lm_head")}
    return sorted(names)


def train(base_model: Path, texts: Sequence[str], labels: Sequence[bool], lspec: dict[str, Any], seed: int,
          dev: torch.device, cuts: Any = None) -> tuple[LMVerifier, dict[str, Any]]:
    """A fresh LoRA + head on `base_model` fitted to the labelled texts; (verifier, training stats)."""
    from peft import LoraConfig, get_peft_model

    start = time.perf_counter()
    torch.manual_seed(seed)
    model, tok = lm.load(base_model, dev, trainable=True)
    cfg = LoraConfig(r=lspec["lora_r"], lora_alpha=2 * lspec["lora_r"], lora_dropout=0.0,
                     target_modules=linear_layers(model))
    model = get_peft_model(model, cfg)
    clf = Classifier(model, hidden_size(model)).to(dev)
    max_length = window(model, lspec["max_length"])
    seqs = encode(tok, texts, max_length, cuts)
    y = torch.tensor([float(v) for v in labels])
    positives = float(y.sum())
    pos_weight = min(MAX_POS_WEIGHT, (len(y) - positives) / positives) if positives else 1.0
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=dev))
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lspec["learning_rate"], weight_decay=0.0)
    order = list(range(len(seqs)))
    rng = random.Random(seed)
    losses: list[float] = []
    for _ in range(lspec["epochs"]):
        rng.shuffle(order)
        clf.train()
        for b in range(0, len(order), lspec["batch_size"]):
            idx = order[b: b + lspec["batch_size"]]
            ids, mask = batch([seqs[i] for i in idx], tok.pad_token_id, dev)
            loss = loss_fn(clf(ids, mask), y[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    clf.eval()
    stats = {"examples": len(seqs), "positives": int(positives), "pos_weight": pos_weight, "steps": len(losses),
             "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
             "trainable_parameters": sum(p.numel() for p in params), "max_length": max_length,
             "train_seconds": time.perf_counter() - start}
    return LMVerifier(clf, tok, max_length, lspec["batch_size"]), stats
