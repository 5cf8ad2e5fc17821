# Sophia: a small code LM from hub checkpoint to offline phone assistant, one stage per rule.
# This file only wires: config, validation, stage rules, final targets. See README.md.
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the embedded default; a --configfile (e.g. configs/paper.yaml) replaces it
# instead of being merged into it, so each file describes one complete study.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/base_model.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/mobile.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/gguf.smk"


rule all:
    default_target: True
    input:
        rules.base_model.output,
        expand(rules.data.output, dataset=config["datasets"]),
        rules.quantize.output,
        expand(rules.finetune.output.summary, chain=curricula.finals(FINETUNE["curricula"]).values()),
        rules.report.output,
        expand(rules.export.output, model=EXPORT["models"]),
        rules.mobile.output if MOBILE["model"] else [],
        expand(rules.distill.output, name=DISTILL),
        expand(rules.distill_control.output, name=DISTILL),
        expand(rules.gguf.output, model=GGUF["models"]),
