"""Stage `data`: instruction datasets sampled into prompt/completion JSONL.

Output (`results/data/{dataset}/`):
- `{task}/train.jsonl`, `{task}/eval.jsonl`: one object per line with `id`, `task`, `language`
  (null for code_alpaca), `prompt` (the shared `Instruct: ...\\nOutput:` template), `completion`
  (the answer, starting with one space) and `source_row` (1-based row in the source). This is
  TRL's prompt-completion format, so the finetune stage reads it as is.
- `stats.json`: source, rows read and skipped, rows per task/split/language, token-length
  percentiles measured with the base model's tokenizer.
- `mlflow_run.json`: the run that produced it (lineage for downstream stages).
"""
