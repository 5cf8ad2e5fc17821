"""llama.cpp's own HF -> GGUF converter, run as a subprocess of the gguf stage.

The converter (`convert_hf_to_gguf.py`, its `conversion/` package and `gguf-py/`) ships only in the
llama-cpp-python sdist (`vendor/llama.cpp/`), not in the `gguf` wheel; `make setup` unpacks it next
to the cached wheel (envs/llama_cpp.sh). Two adjustments are made from here, both explicit:

- `--pre gpt-2`: a retrained byte-level BPE (the scratch tokenizer) has its own vocabulary, so the
  converter's pre-tokenizer check, which hashes the token ids of a probe text, cannot know it and
  stops with "BPE pre-tokenizer was not recognized". Its pre-tokenizer is GPT-2's regex, so it is
  named as such; the stage then checks token for token that llama.cpp tokenizes like the HF
  tokenizer. Without `--pre` (hub models) the converter's own detection decides.
- Llama without `tokenizer.model` (DeepSeek-Coder and the scratch Llama have a byte-level BPE in
  tokenizer.json only): the converter tries SentencePiece first and falls back to the BPE on the
  FileNotFoundError for the missing file, but it imports `sentencepiece` before it looks, so without
  that package it stops with ModuleNotFoundError. The missing file is reported before the import.
- Phi: the converter writes `feed_forward_length = 4 * hidden_size` (true for Phi-2) instead of the
  config's `intermediate_size`; llama.cpp then rejects any other ratio at load. The real width is
  written over it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def patch(pre: str | None) -> None:
    from conversion import base, phi

    if pre is not None:
        base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre

    sentencepiece = base.TextModel._create_vocab_sentencepiece

    def create_vocab_sentencepiece(self: base.TextModel) -> tuple:
        if not (self.dir_model / "tokenizer.model").is_file():
            raise FileNotFoundError(f"File not found: {self.dir_model / 'tokenizer.model'}")
        return sentencepiece(self)

    base.TextModel._create_vocab_sentencepiece = create_vocab_sentencepiece

    original = phi.Phi2Model.set_gguf_parameters

    def set_gguf_parameters(self: phi.Phi2Model) -> None:
        original(self)
        width = self.hparams.get("intermediate_size")
        if width is not None:
            self.gguf_writer.add_feed_forward_length(width)

    phi.Phi2Model.set_gguf_parameters = set_gguf_parameters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, type=Path, help="llama.cpp source tree (vendor/llama.cpp of the sdist)")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--outfile", required=True, type=Path)
    p.add_argument("--outtype", default="f16")
    p.add_argument("--pre", help="pre-tokenizer name to write instead of the converter's hash detection")
    args = p.parse_args()
    # the vendored gguf-py must win over any `gguf` wheel: it matches this converter
    sys.path[:0] = [str(args.src), str(args.src / "gguf-py")]
    import convert_hf_to_gguf

    patch(args.pre)
    sys.argv = ["convert_hf_to_gguf.py", str(args.model), "--outfile", str(args.outfile), "--outtype", args.outtype]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
