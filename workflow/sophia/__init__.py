"""Sophia: from a hub checkpoint to an offline coding assistant, one Snakemake stage at a time."""

__version__ = "0.1.0"
