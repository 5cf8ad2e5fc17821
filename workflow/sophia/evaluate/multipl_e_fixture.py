"""The embedded default's MultiPL-E snapshot: four problems written for this project, in the hub
dataset's layout (`<root>/nuprl/MultiPL-E/<suite>-<language>/test.jsonl` and a README `configs:`
header), each with a known-correct and a known-wrong completion per language. The completions
are what a model would write after the prompt, ending before the language's stop sequence, so
`prompt + completion + "\\n" + tests` is the program MultiPL-E would run. The tests run every one
through the sandbox (every correct one passes, every wrong one fails), which proves each
toolchain there; the evaluate stage's toolchain self-test uses the first problem.

Regenerate the committed files after a change here:
`.venv/bin/python -m sophia.evaluate.multipl_e_fixture workflow/resources/eval/hub`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sophia.evaluate.multipl_e_render import Problem, row

HUB_ID = "nuprl/MultiPL-E"
LANGUAGES = ("cpp", "java", "rs", "rb", "sh")
SUITES = ("humaneval", "mbpp")

PROBLEMS = (
    Problem("humaneval", 0, "sum_squares", (("numbers", "list[int]"),), "int",
            "Return the sum of the squares of the given numbers (0 for none).\n>>> sum_squares([1, 2, 3])\n14",
            (((([1, 2, 3]),), 14), (([],), 0), (([-2, 5],), 29))),
    Problem("humaneval", 1, "count_vowels", (("text", "str"),), "int",
            "Count the lower-case vowels a, e, i, o and u in text.\n>>> count_vowels(\"hello\")\n2",
            ((("hello",), 2), (("sky",), 0), (("aeiou",), 5))),
    Problem("mbpp", 0, "max_of_three", (("a", "int"), ("b", "int"), ("c", "int")), "int",
            "Write a function to find the largest of three integers.",
            (((1, 5, 3), 5), ((-1, -7, -3), -1), ((4, 4, 2), 4))),
    Problem("mbpp", 1, "is_palindrome", (("text", "str"),), "bool",
            "Write a function to check whether a string reads the same forwards and backwards.",
            ((("racecar",), True), (("ab",), False), (("",), True))),
)

# (correct, wrong) completion per problem and language; each wrong one compiles and runs, but
# gets an answer wrong (an off-by-one, a missed case), as a model's near miss would.
COMPLETIONS: dict[str, dict[str, tuple[str, str]]] = {
    "sum_squares": {
        "cpp": ("    long total = 0;\n    for (long x : numbers) total += x * x;\n    return total;",
                "    long total = 0;\n    for (long x : numbers) total += x;\n    return total;"),
        "java": ("        long total = 0;\n        for (long x : numbers) total += x * x;\n        return total;",
                 "        long total = 1;\n        for (long x : numbers) total += x * x;\n        return total;"),
        "rs": ("    numbers.iter().map(|x| x * x).sum()", "    numbers.iter().map(|x| x * 2).sum()"),
        "rb": ("  numbers.sum { |x| x * x }\nend", "  numbers.sum { |x| x.abs }\nend"),
        "sh": ("    local total=0\n    for x in $1; do total=$((total + x * x)); done\n    echo $total",
               "    local total=0\n    for x in $1; do total=$((total + x)); done\n    echo $total"),
    },
    "count_vowels": {
        "cpp": ("    long n = 0;\n    for (char ch : text)\n"
                "        if (std::string(\"aeiou\").find(ch) != std::string::npos) n++;\n    return n;",
                "    long n = 0;\n    for (char ch : text)\n"
                "        if (std::string(\"aeio\").find(ch) != std::string::npos) n++;\n    return n;"),
        "java": ("        return text.chars().filter(ch -> \"aeiou\".indexOf(ch) >= 0).count();",
                 "        return text.chars().filter(ch -> \"aeiou\".indexOf(ch) > 0).count();"),
        "rs": ("    text.chars().filter(|c| \"aeiou\".contains(*c)).count() as isize",
               "    text.chars().filter(|c| \"aeiou\".contains(*c)).count() as isize - 1"),
        "rb": ("  text.count(\"aeiou\")\nend", "  text.count(\"aei\")\nend"),
        "sh": ("    local only=\"${1//[^aeiou]/}\"\n    echo ${#only}",
               "    local only=\"${1//[^aeio]/}\"\n    echo ${#only}"),
    },
    "max_of_three": {
        "cpp": ("    return std::max(a, std::max(b, c));", "    return std::max(a, c);"),
        "java": ("        return Math.max(a, Math.max(b, c));", "        return Math.max(a, c);"),
        "rs": ("    a.max(b).max(c)", "    a.max(c)"),
        "rb": ("  [a, b, c].max\nend", "  [a, c].max\nend"),
        "sh": ("    local m=$1\n    (( $2 > m )) && m=$2\n    (( $3 > m )) && m=$3\n    echo $m",
               "    local m=$1\n    (( $3 > m )) && m=$3\n    echo $m"),
    },
    "is_palindrome": {
        "cpp": ("    return std::string(text.rbegin(), text.rend()) == text;", "    return text.size() % 2 == 1;"),
        "java": ("        return new StringBuilder(text).reverse().toString().equals(text);",
                 "        return text.length() % 2 == 1;"),
        "rs": ("    text.chars().rev().collect::<String>() == text", "    text.len() % 2 == 1"),
        "rb": ("  text == text.reverse\nend", "  text.length.odd?\nend"),
        "sh": ("    [[ \"$1\" == \"$(rev <<< \"$1\")\" ]] && echo true || echo false",
               "    (( ${#1} % 2 == 1 )) && echo true || echo false"),
    },
}


def config_name(suite: str, lang: str) -> str:
    return f"{suite}-{lang}"


def rows(suite: str, lang: str) -> list[dict]:
    return [row(p, lang) for p in PROBLEMS if p.suite == suite]


def programs(lang: str) -> list[tuple[str, str, bool]]:
    """(row name, program, expected to pass) for every problem's correct and wrong completion."""
    out = []
    for p in PROBLEMS:
        r = row(p, lang)
        good, bad = COMPLETIONS[p.name][lang]
        for completion, ok in ((good, True), (bad, False)):
            out.append((r["name"], r["prompt"] + completion + "\n" + r["tests"], ok))
    return out


def readme() -> str:
    lines = ["---", "configs:"]
    for suite in SUITES:
        for lang in LANGUAGES:
            name = config_name(suite, lang)
            lines += [f"- config_name: {name}", "  data_files:", f"  - {{split: test, path: {name}/test.jsonl}}"]
    lines += ["---", "", f"Problems written for Sophia's embedded default in the schema of `{HUB_ID}` "
              "(generated by `sophia.evaluate.multipl_e_fixture`).", ""]
    return "\n".join(lines)


def files() -> dict[str, str]:
    """Relative path under `<root>/nuprl/MultiPL-E` -> content."""
    out = {"README.md": readme()}
    for suite in SUITES:
        for lang in LANGUAGES:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows(suite, lang))
            out[f"{config_name(suite, lang)}/test.jsonl"] = text
    return out


def write(root: Path) -> Path:
    """The snapshot under `root` (a hub-shaped dataset root); returns its folder."""
    folder = Path(root) / HUB_ID
    for rel, text in files().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description="Write the MultiPL-E snapshot of the embedded default.")
    p.add_argument("root", type=Path, help="hub-shaped dataset root (workflow/resources/eval/hub)")
    print(write(p.parse_args().root))


if __name__ == "__main__":
    main()
