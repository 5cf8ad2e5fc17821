"""Stage `base_model`: the Hugging Face checkpoint every later stage starts from.

Output (`results/models/base/`): a Hugging Face causal LM directory (config, safetensors,
tokenizer), a model card (README.md), `base_model.json` (source, parameter count by dtype,
size on disk, and for `scratch` the training summary) and the MLflow run record.
"""
