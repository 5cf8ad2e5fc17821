"""Stage `finetune`: LoRA on the GPTQ model, one job per curriculum step.

A step is named by its chain of phases, `alpaca` or `tiny_codegen/tiny_summary/alpaca`, and
continues from the adapter of its prefix. Output (`results/adapters/{chain}/`): the PEFT
adapter (`adapter_model.safetensors`, `adapter_config.json`), `README.md` (model card),
`finetune.json` (settings, losses, throughput, token shares; written last, so its presence
means the adapter is complete), `loss_curve.png`, `reference_answers.json`, the MLflow run
record. `.checkpoints/` holds resumable Trainer checkpoints while a step runs.
"""
