"""Fill-in-the-middle prompts, built and truncated as llama.cpp's server builds them for /infill.

The prompt is [BOS] <prefix-token> prefix <suffix-token> suffix <middle-token>, and the model writes
the middle. An editor sends the whole file around the cursor; when that does not fit, the text near
the cursor is what matters: the end of the prefix and the start of the suffix are kept. As in
llama.cpp, the suffix gets at most a quarter of the room (more when the prefix leaves it unused), and
room is left to generate. The user's text is tokenized without special-token parsing, so a file that
happens to contain "<|fim_suffix|>" cannot forge the prompt's structure.
"""

from __future__ import annotations

from collections.abc import Sequence

from sophia.serve.engine import Engine
from sophia.serve.errors import RequestError


def fit(prefix: Sequence[int], suffix: Sequence[int], room: int) -> tuple[list[int], list[int]]:
    """The end of `prefix` and the start of `suffix`, at most `room` tokens together."""
    if room <= 0:
        return [], []
    suffix_take = min(len(suffix), room // 4)
    prefix_take = min(len(prefix), room - suffix_take)
    suffix_take = min(len(suffix), room - prefix_take)  # what a short prefix leaves goes to the suffix
    return list(prefix[len(prefix) - prefix_take:]), list(suffix[:suffix_take])


def generation_room(n_ctx: int, max_tokens: int) -> int:
    """Tokens kept free for the answer: what was asked, but at most a quarter of the context."""
    quarter = max(1, n_ctx // 4)
    return quarter if max_tokens <= 0 else min(max_tokens, quarter)


async def fim_tokens(engine: Engine, prefix: str, suffix: str, max_tokens: int, max_chars: int) -> list[int]:
    ids = engine.model.fim_ids()
    if ids is None:
        raise RequestError("this model has no fill-in-the-middle tokens, so 'suffix' is not supported "
                           "(FIM needs a model trained with them, e.g. DeepSeek-Coder)")
    pre, suf, mid = ids
    # characters first: an editor may send a whole large file, and tokenizing what is cut anyway is waste
    prefix, suffix = prefix[max(0, len(prefix) - max_chars):], suffix[:max_chars]
    bos = await engine.tokenize("", add_bos=True)
    prefix_ids = await engine.tokenize(prefix, add_bos=False)
    suffix_ids = await engine.tokenize(suffix, add_bos=False)
    room = engine.n_ctx - len(bos) - 3 - generation_room(engine.n_ctx, max_tokens)
    prefix_ids, suffix_ids = fit(prefix_ids, suffix_ids, room)
    return [*bos, pre, *prefix_ids, suf, *suffix_ids, mid]
