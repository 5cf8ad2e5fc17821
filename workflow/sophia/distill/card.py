"""The model card of a distilled student or its SFT control."""

from __future__ import annotations

from typing import Any


def _agreement(a: dict[str, float] | None) -> str:
    return "not comparable (different vocabularies)" if a is None else \
        f"top-1 {100 * a['top1_agreement']:.1f}%, KL {a['kl']:.3f} nats/token"


def model_card(s: dict[str, Any]) -> str:
    d, phase = s["spec"]["distill"], s["spec"]["phase"]
    t = d["training"]
    loss = d["loss"]
    if s["control"]:
        how = "supervised fine-tuning on the phase's own answers (the SFT control of the distilled student)"
    elif s["method"] == "token":
        how = (f"token-level KD: (1 - {loss['alpha']}) * T^2 * {loss['divergence']}(teacher, student) at T = "
               f"{loss['temperature']} + {loss['alpha']} * CE")
    else:
        how = ("sequence-level KD: fine-tuned on the teacher's greedy answers to the training prompts "
               "(teacher_data.jsonl)")
    weights = "a LoRA adapter on the student model" if s["lora"] else "all weights fine-tuned (full model here)"
    return f"""# Student `{s['variant']}`

Student {s['student']} ({s['parameters']:,} parameters, {s['trainable_parameters']:,} trained), teacher
{s['teacher']}; {how}; {weights}.

- Data: phase `{d['phase']}` (tasks {', '.join(phase['tasks'])} of dataset `{phase['dataset']}`), {s['train_rows']}
  train rows, {s['eval_rows']} held-out rows, max length {phase['max_length']}, {phase['epochs']} epochs.
- Training: batch {t['batch_size']} x {t['gradient_accumulation_steps']}, peak learning rate
  {phase.get('learning_rate') or t['learning_rate']}, cosine schedule, seed {t['seed']}; {s['global_steps']} steps in
  {s['seconds']:.1f} s on {s['device']} ({s['tokens_per_second']:.0f} tokens/s).
- Agreement with the teacher on held-out answers, before: {_agreement(s['agreement_before'])};
  after: {_agreement(s['agreement_after'])}.
"""
