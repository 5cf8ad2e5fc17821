"""The one prompt template every stage shares (training, evaluation, export, the phone app).

Phi-2's documented instruct format; keeping it in one module means the data stage, the
trainer and the app can never drift apart.
"""

from __future__ import annotations

TEMPLATE = "Instruct: {instruction}\nOutput:"
# The answer follows the colon after one space, so tokenisation of "Output: x" matches.
ANSWER_PREFIX = " "


def build_prompt(instruction: str) -> str:
    """Wrap a request (or, for the summary task, a piece of code) in the instruct template."""
    return TEMPLATE.format(instruction=instruction.strip())


def build_completion(answer: str) -> str:
    """The text the model must produce after the prompt."""
    return ANSWER_PREFIX + answer.strip()
