"""Stage `distill`: a student trained on a teacher's outputs, and its SFT control.

Token method: KD on the teacher's next-token distributions (forward/reverse KL or generalized JSD
at temperature T, plus an optional hard-label CE weight), through a subclass of TRL's GKDTrainer.
Sequence method: the teacher answers the training prompts and the student is fine-tuned on them.
The control trains the same student on the phase's own answers with the same data and budget.

Output (`results/distill/{name}/`, the control in `control/`): the student (full weights, or a LoRA
adapter on the base model), tokenizer, `distill.json` (written last), `README.md`,
`reference_answers.json`, `loss_curve.png`, `teacher_data.jsonl` (sequence method), the MLflow run
record. `.checkpoints/` holds resumable Trainer checkpoints while a run is in progress.
"""
