"""Stage `quantize`: GPTQ of the base model with gptqmodel, measured before and after.

Output (`results/models/gptq/`): the standard GPTQ (v1) checkpoint that
`transformers.AutoModelForCausalLM.from_pretrained` (with gptqmodel + optimum installed) and
vLLM load; `quantize_config.json`; `quantize.json` (sizes and ratio, parameters by dtype,
wall time, peak memory, perplexity before/after per eval split, logit differences);
`reference_answers.json` (base vs quantized answers); `quantize_logs/` (gptqmodel's per-layer
log); the MLflow run record.
"""
