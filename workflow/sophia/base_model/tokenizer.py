"""Byte-level BPE tokenizer trained on the corpus: the same kind Phi-2, DeepSeek-Coder and Qwen2 use
(GPT-2 style byte-level pre-tokenization), so every byte sequence is encodable and the export/browser
stages see a familiar format. The family decides the special tokens (sophia.base_model.families)."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from sophia.base_model.families import family

EOS = "<|endoftext|>"


def train_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int,
                    family_name: str = "phi") -> PreTrainedTokenizerFast:
    fam = family(family_name)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if family_name == "qwen2":
        # transformers loads every qwen2 model's tokenizer as Qwen2Tokenizer, which sets Qwen's own
        # normalizer (NFC) and pre-tokenizer (its split regex, then bytes) whatever tokenizer.json says;
        # training with the same ones keeps the model's tokenization one from pretraining to export
        # (and llama.cpp's `qwen2` pre-tokenizer reproduces it).
        from transformers import Qwen2Tokenizer

        qwen = Qwen2Tokenizer().backend_tokenizer
        tok.normalizer, tok.pre_tokenizer = qwen.normalizer, qwen.pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=fam.special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if fam.bos is not None:
        # in tokenizer.json itself, so every reader (transformers, llama.cpp's converter, the app's
        # tokenizer in the browser) prepends it the same way
        bos_id = tok.token_to_id(fam.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{fam.bos} $A", pair=f"{fam.bos} $A {fam.bos} $B", special_tokens=[(fam.bos, bos_id)])
    extra = [t for t in (*(fam.fim or ()), *fam.extra_special)]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=fam.bos or fam.eos,
        eos_token=fam.eos,
        unk_token=fam.eos,
        pad_token=fam.eos,
        model_max_length=max_length,
        additional_special_tokens=extra or None,
    )
