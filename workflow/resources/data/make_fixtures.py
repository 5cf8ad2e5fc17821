"""Write the two small instruction datasets that ship with Sophia.

The files written next to this script are fixture data written by the project
for the embedded offline default. They are shaped like two public hub datasets
so that the same loading code handles both, but every row was written for this
project from templates in this file; none of it comes from those datasets:

* ``codealpaca_mini.jsonl``: 150 rows with the CodeAlpaca-20k schema
  (``instruction``, ``input``, ``output``): small programming requests,
  mostly Python, some JavaScript, a few SQL one-liners and short answers.
* ``tiny_codes_mini.jsonl``: 256 rows with the tiny-codes schema (``prompt``,
  ``main_topic``, ``subtopic``, ``adjective``, ``action_verb``, ``scenario``,
  ``target_audience``, ``programming_language``, ``common_sense_topic``,
  ``idx``, ``response``): 48 rows each for C++, Java, Ruby, Rust and Bash and
  8 each for Python and JavaScript, so language filtering can be tested.

The script uses only the standard library and is deterministic: running it
twice gives byte-identical files. Regenerate with::

    python workflow/resources/data/make_fixtures.py
"""

import json
import random
import re
import sqlite3
import textwrap
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODEALPACA_PATH = HERE / "codealpaca_mini.jsonl"
TINY_CODES_PATH = HERE / "tiny_codes_mini.jsonl"

SEED = 20261121
CODEALPACA_ROWS = 150
CODEALPACA_KEYS = ("instruction", "input", "output")
TINY_CODES_KEYS = (
    "prompt",
    "main_topic",
    "subtopic",
    "adjective",
    "action_verb",
    "scenario",
    "target_audience",
    "programming_language",
    "common_sense_topic",
    "idx",
    "response",
)
TINY_CODES_LANGUAGE_COUNTS = {
    "C++": 48,
    "Java": 48,
    "Ruby": 48,
    "Rust": 48,
    "Bash": 48,
    "Python": 8,
    "JavaScript": 8,
}

_PLACEHOLDER = re.compile(r"@([a-z0-9_]+)@")
# Messages and labels are pasted into string literals of seven languages; a
# conservative alphabet means no per-language escaping is ever needed.
_SAFE_TEXT = re.compile(r"[A-Za-z0-9 ,./-]+")


def _fill(template: str, values: dict[str, object]) -> str:
    """Substitute ``@name@`` placeholders; an unknown name raises KeyError."""
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def _code(template: str, **values: object) -> str:
    return _fill(textwrap.dedent(template).strip("\n"), values)


# ---------------------------------------------------------------------------
# CodeAlpaca-shaped rows
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    language: str
    instruction: str
    input: str
    output: str


def _python_tasks() -> list[Task]:
    tasks: list[Task] = []

    def add(instruction: str, code: str, input_text: str = "", **values: object) -> None:
        tasks.append(Task("python", instruction, input_text, _code(code, **values)))

    add(
        "Write a Python function that reverses a string.",
        """
        def reverse_string(text: str) -> str:
            return text[::-1]
    """,
    )
    for word in ("sophia", "keyboard"):
        add(
            "Reverse the given string in Python without using slicing.",
            """
            def reverse_without_slicing(text):
                result = ""
                for char in text:
                    result = char + result
                return result


            print(reverse_without_slicing("@word@"))
        """,
            word,
            word=word,
        )
    add(
        "Create a Python function named flip_words that reverses the order of the words in a sentence.",
        """
        def flip_words(sentence: str) -> str:
            return " ".join(reversed(sentence.split()))
    """,
    )
    add(
        "Write a Python function that returns the sum of all numbers in a list.",
        """
        def list_sum(numbers):
            total = 0
            for number in numbers:
                total += number
            return total
    """,
    )
    for numbers in ("[4, 9, 15, 22]", "[1.5, 2.5, 3.0]"):
        add(
            "Compute the sum of the following list in Python.",
            """
            numbers = @numbers@
            print(sum(numbers))
        """,
            numbers,
            numbers=numbers,
        )
    add(
        "Write a Python function that returns the sum of the squares of a list of integers.",
        """
        def sum_of_squares(numbers: list[int]) -> int:
            return sum(n * n for n in numbers)
    """,
    )
    add(
        "Write a Python function that adds up only the even numbers in a list.",
        """
        def sum_even(numbers: list[int]) -> int:
            return sum(n for n in numbers if n % 2 == 0)
    """,
    )
    add(
        "Write a Python function to check whether a number is prime.",
        """
        def is_prime(n: int) -> bool:
            if n < 2:
                return False
            divisor = 2
            while divisor * divisor <= n:
                if n % divisor == 0:
                    return False
                divisor += 1
            return True
    """,
    )
    for limit in (30, 50, 100):
        add(
            f"Write a Python program that prints every prime number up to {limit}.",
            """
            def primes_up_to(limit):
                primes = []
                for candidate in range(2, limit + 1):
                    if all(candidate % p != 0 for p in primes if p * p <= candidate):
                        primes.append(candidate)
                return primes


            print(primes_up_to(@limit@))
        """,
            limit=limit,
        )
    for n, verdict in ((97, "True"), (91, "False")):
        add(
            "Determine whether the given number is prime using Python.",
            """
            n = @n@
            is_prime = n > 1 and all(n % d != 0 for d in range(2, int(n**0.5) + 1))
            print(is_prime)  # @verdict@
        """,
            str(n),
            n=n,
            verdict=verdict,
        )
    add(
        "Write a Python function that computes the factorial of a non-negative integer iteratively.",
        """
        def factorial(n: int) -> int:
            result = 1
            for i in range(2, n + 1):
                result *= i
            return result
    """,
    )
    add(
        "Write a recursive Python function that returns the factorial of n.",
        """
        def factorial(n: int) -> int:
            if n <= 1:
                return 1
            return n * factorial(n - 1)
    """,
    )
    for n, value in ((6, 720), (10, 3628800)):
        add(
            "Calculate the factorial of the given number in Python.",
            """
            import math

            print(math.factorial(@n@))  # @value@
        """,
            str(n),
            n=n,
            value=value,
        )
    add(
        "Write a Python function that returns the n-th Fibonacci number, where fib(0) is 0.",
        """
        def fib(n: int) -> int:
            a, b = 0, 1
            for _ in range(n):
                a, b = b, a + b
            return a
    """,
    )
    add(
        "Write a Python function that returns a list containing the first n Fibonacci numbers.",
        """
        def fibonacci_list(n: int) -> list[int]:
            sequence = []
            a, b = 0, 1
            while len(sequence) < n:
                sequence.append(a)
                a, b = b, a + b
            return sequence
    """,
    )
    for count in (8, 12):
        add(
            f"Print the first {count} Fibonacci numbers in Python.",
            """
            a, b = 0, 1
            for _ in range(@count@):
                print(a)
                a, b = b, a + b
        """,
            count=count,
        )
    add(
        "Write a Python generator that yields Fibonacci numbers forever.",
        """
        def fibonacci():
            a, b = 0, 1
            while True:
                yield a
                a, b = b, a + b
    """,
    )
    add(
        "Write a Python function that counts the vowels in a string.",
        """
        def count_vowels(text: str) -> int:
            return sum(1 for char in text.lower() if char in "aeiou")
    """,
    )
    for sentence in ("Programming puzzles are fun", "Snakemake runs the whole pipeline"):
        add(
            "Count the vowels in the following sentence with Python.",
            """
            sentence = "@sentence@"
            vowels = sum(1 for char in sentence.lower() if char in "aeiou")
            print(vowels)
        """,
            sentence,
            sentence=sentence,
        )
    add(
        "Write a Python function that counts the consonants in a word.",
        """
        def count_consonants(word: str) -> int:
            return sum(1 for char in word.lower() if char.isalpha() and char not in "aeiou")
    """,
    )
    add(
        "Write a Python function that finds the largest number in a list without using max().",
        """
        def largest(numbers):
            best = numbers[0]
            for number in numbers[1:]:
                if number > best:
                    best = number
            return best
    """,
    )
    add(
        "Find the maximum value in the given list using Python.",
        """
        values = [17, 3, 42, 8, 25]
        print(max(values))  # 42
    """,
        "[17, 3, 42, 8, 25]",
    )
    add(
        "Write a Python function that returns both the smallest and the largest element of a list.",
        """
        def min_max(values):
            return min(values), max(values)
    """,
    )
    add(
        "Write a Python function that returns the index of the largest element in a list.",
        """
        def index_of_max(values: list[float]) -> int:
            return max(range(len(values)), key=values.__getitem__)
    """,
    )
    add(
        "Write a Python function that converts a temperature from Celsius to Fahrenheit.",
        """
        def celsius_to_fahrenheit(celsius: float) -> float:
            return celsius * 9 / 5 + 32
    """,
    )
    add(
        "Write a Python function that converts a temperature from Fahrenheit to Celsius.",
        """
        def fahrenheit_to_celsius(fahrenheit: float) -> float:
            return (fahrenheit - 32) * 5 / 9
    """,
    )
    for celsius, fahrenheit in (("37", "98.6"), ("-40", "-40.0")):
        add(
            "Convert the given temperature from Celsius to Fahrenheit in Python.",
            """
            celsius = @celsius@
            fahrenheit = celsius * 9 / 5 + 32
            print(round(fahrenheit, 1))  # @fahrenheit@
        """,
            celsius,
            celsius=celsius,
            fahrenheit=fahrenheit,
        )
    add(
        "Convert a list of Celsius readings to Fahrenheit with a Python list comprehension.",
        """
        readings = [0, 12.5, 30, 100]
        converted = [c * 9 / 5 + 32 for c in readings]
        print(converted)
    """,
        "[0, 12.5, 30, 100]",
    )
    add(
        "Write a Python function that checks whether a string is a palindrome.",
        """
        def is_palindrome(text: str) -> bool:
            return text == text[::-1]
    """,
    )
    add(
        "Check in Python whether the given phrase is a palindrome, ignoring spaces and letter case.",
        """
        phrase = "Never odd or even"
        letters = phrase.replace(" ", "").lower()
        print(letters == letters[::-1])  # True
    """,
        "Never odd or even",
    )
    add(
        "Write a Python function that checks whether an integer reads the same forwards and backwards.",
        """
        def is_number_palindrome(n: int) -> bool:
            digits = str(abs(n))
            return digits == digits[::-1]
    """,
    )
    add(
        "Write a Python function that removes duplicates from a list while keeping the original order.",
        """
        def dedupe(items):
            seen = set()
            result = []
            for item in items:
                if item not in seen:
                    seen.add(item)
                    result.append(item)
            return result
    """,
    )
    add(
        "Remove the duplicate values from the following list in Python.",
        """
        values = [3, 1, 3, 7, 1, 9]
        unique = list(dict.fromkeys(values))
        print(unique)  # [3, 1, 7, 9]
    """,
        "[3, 1, 3, 7, 1, 9]",
    )
    add(
        "Write a Python function that counts the words in a sentence.",
        """
        def word_count(sentence: str) -> int:
            return len(sentence.split())
    """,
    )
    add(
        "Count how many times each word appears in the given text using Python.",
        """
        from collections import Counter

        text = "the cat and the hat and the bat"
        print(Counter(text.split()))
    """,
        "the cat and the hat and the bat",
    )
    add(
        "Write a Python function that returns the longest word in a sentence.",
        """
        def longest_word(sentence: str) -> str:
            return max(sentence.split(), key=len)
    """,
    )
    add(
        "Write a Python function that merges two sorted lists into one sorted list without calling sort().",
        """
        def merge_sorted(left, right):
            merged = []
            i = j = 0
            while i < len(left) and j < len(right):
                if left[i] <= right[j]:
                    merged.append(left[i])
                    i += 1
                else:
                    merged.append(right[j])
                    j += 1
            merged.extend(left[i:])
            merged.extend(right[j:])
            return merged
    """,
    )
    add(
        "Merge the two sorted lists below into a single sorted list in Python.",
        """
        import heapq

        first = [1, 4, 9]
        second = [2, 3, 10, 12]
        print(list(heapq.merge(first, second)))
    """,
        "[1, 4, 9]\n[2, 3, 10, 12]",
    )
    add(
        "Write an iterative binary search in Python that returns the index of a target or -1.",
        """
        def binary_search(items, target):
            low, high = 0, len(items) - 1
            while low <= high:
                mid = (low + high) // 2
                if items[mid] == target:
                    return mid
                if items[mid] < target:
                    low = mid + 1
                else:
                    high = mid - 1
            return -1
    """,
    )
    add(
        "Write a recursive binary search function in Python.",
        """
        def binary_search(items, target, low=0, high=None):
            if high is None:
                high = len(items) - 1
            if low > high:
                return -1
            mid = (low + high) // 2
            if items[mid] == target:
                return mid
            if items[mid] < target:
                return binary_search(items, target, mid + 1, high)
            return binary_search(items, target, low, mid - 1)
    """,
    )
    add(
        "Use binary search in Python to find the index of the target in the given sorted list.",
        """
        import bisect

        numbers = [2, 5, 8, 12, 16, 23, 38]
        target = 23
        index = bisect.bisect_left(numbers, target)
        print(index if index < len(numbers) and numbers[index] == target else -1)  # 5
    """,
        "numbers = [2, 5, 8, 12, 16, 23, 38], target = 23",
    )
    add(
        "Write a Python function that computes the GCD of two integers with Euclid's algorithm.",
        """
        def gcd(a: int, b: int) -> int:
            while b:
                a, b = b, a % b
            return abs(a)
    """,
    )
    add(
        "Write a Python function that returns the least common multiple of two positive integers.",
        """
        from math import gcd


        def lcm(a: int, b: int) -> int:
            return a * b // gcd(a, b)
    """,
    )
    for a, b, g in ((48, 18, 6), (84, 36, 12)):
        add(
            "Find the GCD of the given pair of numbers in Python.",
            """
            import math

            print(math.gcd(@a@, @b@))  # @g@
        """,
            f"{a}, {b}",
            a=a,
            b=b,
            g=g,
        )
    add(
        "Flatten a list of lists into a single list in Python.",
        """
        nested = [[1, 2], [3], [4, 5, 6]]
        flat = [item for sublist in nested for item in sublist]
        print(flat)
    """,
        "[[1, 2], [3], [4, 5, 6]]",
    )
    add(
        "Write a Python function that flattens an arbitrarily nested list.",
        """
        def flatten(items):
            result = []
            for item in items:
                if isinstance(item, list):
                    result.extend(flatten(item))
                else:
                    result.append(item)
            return result
    """,
    )
    add(
        "Write a Python function that returns the average of a list of numbers, or 0 for an empty list.",
        """
        def average(numbers: list[float]) -> float:
            if not numbers:
                return 0.0
            return sum(numbers) / len(numbers)
    """,
    )
    add(
        "Compute the mean of the numbers below in Python.",
        """
        from statistics import mean

        print(mean([12, 15, 20, 33]))  # 20
    """,
        "[12, 15, 20, 33]",
    )
    for factor in (2, 3, 5, 10):
        add(
            f"Write a Python function that returns a new list with every element multiplied by {factor}.",
            """
            def scale_by_@factor@(numbers):
                return [n * @factor@ for n in numbers]
        """,
            factor=factor,
        )
    for threshold in (10, 50, 100):
        add(
            f"Write a Python function that keeps only the numbers greater than {threshold} from a list.",
            """
            def above_@threshold@(numbers):
                return [n for n in numbers if n > @threshold@]
        """,
            threshold=threshold,
        )
    for n in (4, 7, 9, 12):
        add(
            f"Write a Python program that prints the multiplication table of {n} from 1 to 10.",
            """
            for i in range(1, 11):
                print(f"@n@ x {i} = {@n@ * i}")
        """,
            n=n,
        )
    add(
        "Write a Python function that returns True if a year is a leap year.",
        """
        def is_leap_year(year: int) -> bool:
            return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    """,
    )
    for year, verdict in ((2024, "True"), (1900, "False")):
        add(
            "Determine whether the given year is a leap year in Python.",
            """
            import calendar

            print(calendar.isleap(@year@))  # @verdict@
        """,
            str(year),
            year=year,
            verdict=verdict,
        )
    add(
        "Write a Python function that checks whether two words are anagrams of each other.",
        """
        def are_anagrams(first: str, second: str) -> bool:
            return sorted(first.lower()) == sorted(second.lower())
    """,
    )
    add(
        "Check whether the two given words are anagrams in Python.",
        """
        first, second = "listen", "silent"
        print(sorted(first) == sorted(second))  # True
    """,
        "listen, silent",
    )
    add(
        "Write a Python function that returns the second largest distinct value in a list.",
        """
        def second_largest(values):
            distinct = sorted(set(values), reverse=True)
            if len(distinct) < 2:
                return None
            return distinct[1]
    """,
    )
    add(
        "Write a Python function that maps each character of a string to the number of times it occurs.",
        """
        def char_frequency(text: str) -> dict[str, int]:
            counts: dict[str, int] = {}
            for char in text:
                counts[char] = counts.get(char, 0) + 1
            return counts
    """,
    )
    add(
        "Write a Python function that swaps the keys and values of a dictionary.",
        """
        def invert(mapping: dict) -> dict:
            return {value: key for key, value in mapping.items()}
    """,
    )
    add(
        "Sort the given Python dictionary by its values in ascending order.",
        """
        stock = {"apples": 5, "pears": 2, "plums": 9}
        by_value = dict(sorted(stock.items(), key=lambda item: item[1]))
        print(by_value)
    """,
        "{'apples': 5, 'pears': 2, 'plums': 9}",
    )
    add(
        "Write a Python function that transposes a matrix given as a list of rows.",
        """
        def transpose(matrix):
            return [list(column) for column in zip(*matrix)]
    """,
    )
    add(
        "Transpose the following matrix in Python.",
        """
        matrix = [[1, 2, 3], [4, 5, 6]]
        print([list(row) for row in zip(*matrix)])  # [[1, 4], [2, 5], [3, 6]]
    """,
        "[[1, 2, 3], [4, 5, 6]]",
    )
    add(
        "Write a Python function that returns the sum of the digits of a non-negative integer.",
        """
        def digit_sum(n: int) -> int:
            total = 0
            while n > 0:
                total += n % 10
                n //= 10
            return total
    """,
    )
    add(
        "Add up the digits of the given number in Python.",
        """
        number = 4096
        print(sum(int(digit) for digit in str(number)))  # 19
    """,
        "4096",
    )
    for n, a, b in ((15, 3, 5), (30, 3, 5), (20, 2, 7)):
        add(
            f"Write a Python program that prints the numbers from 1 to {n}, printing Fizz for multiples of {a}, "
            f"Buzz for multiples of {b}, and FizzBuzz for multiples of both.",
            """
            for i in range(1, @n@ + 1):
                if i % @a@ == 0 and i % @b@ == 0:
                    print("FizzBuzz")
                elif i % @a@ == 0:
                    print("Fizz")
                elif i % @b@ == 0:
                    print("Buzz")
                else:
                    print(i)
            """,
            n=n,
            a=a,
            b=b,
        )
    add(
        "Write a Python function that capitalizes the first letter of every word in a sentence.",
        """
        def capitalize_words(sentence: str) -> str:
            return " ".join(word[:1].upper() + word[1:] for word in sentence.split(" "))
    """,
    )
    add(
        "Write a Python function that converts a snake_case string to camelCase.",
        """
        def snake_to_camel(name: str) -> str:
            first, *rest = name.split("_")
            return first + "".join(part.title() for part in rest)
    """,
    )
    add(
        "Convert the following snake_case identifier to camelCase in Python.",
        """
        name = "max_retry_count"
        first, *rest = name.split("_")
        print(first + "".join(part.title() for part in rest))  # maxRetryCount
    """,
        "max_retry_count",
    )
    for n in (5, 10, 20):
        add(
            f"Use a Python list comprehension to build a list of the squares of the numbers from 1 to {n}.",
            """
            squares = [i * i for i in range(1, @n@ + 1)]
            print(squares)
        """,
            n=n,
        )
    add(
        "Write a Python function that returns the even numbers from a list.",
        """
        def evens(numbers: list[int]) -> list[int]:
            return [n for n in numbers if n % 2 == 0]
    """,
    )
    add(
        "Create a Python class Rectangle with methods that return its area and its perimeter.",
        """
        class Rectangle:
            def __init__(self, width: float, height: float) -> None:
                self.width = width
                self.height = height

            def area(self) -> float:
                return self.width * self.height

            def perimeter(self) -> float:
                return 2 * (self.width + self.height)
    """,
    )
    add(
        "Create a Python class Circle that stores a radius and computes the area.",
        """
        import math


        class Circle:
            def __init__(self, radius: float) -> None:
                self.radius = radius

            def area(self) -> float:
                return math.pi * self.radius**2
    """,
    )
    add(
        "Create a Python class BankAccount with deposit and withdraw methods that refuses overdrafts.",
        """
        class BankAccount:
            def __init__(self, balance: float = 0.0) -> None:
                self.balance = balance

            def deposit(self, amount: float) -> None:
                if amount <= 0:
                    raise ValueError("deposit must be positive")
                self.balance += amount

            def withdraw(self, amount: float) -> None:
                if amount > self.balance:
                    raise ValueError("insufficient funds")
                self.balance -= amount
    """,
    )
    add(
        "Implement a stack class in Python with push, pop and is_empty methods.",
        """
        class Stack:
            def __init__(self) -> None:
                self._items = []

            def push(self, item) -> None:
                self._items.append(item)

            def pop(self):
                return self._items.pop()

            def is_empty(self) -> bool:
                return not self._items
    """,
    )
    add(
        "Implement a first-in first-out queue class in Python using collections.deque.",
        """
        from collections import deque


        class Queue:
            def __init__(self) -> None:
                self._items = deque()

            def enqueue(self, item) -> None:
                self._items.append(item)

            def dequeue(self):
                return self._items.popleft()

            def __len__(self) -> int:
                return len(self._items)
    """,
    )
    add(
        "Write a Python function that counts the lines in a text file.",
        """
        def count_lines(path: str) -> int:
            with open(path, encoding="utf-8") as handle:
                return sum(1 for _ in handle)
    """,
    )
    add(
        "Write a Python function that checks whether one string contains another, ignoring case.",
        """
        def contains_ignore_case(text: str, fragment: str) -> bool:
            return fragment.lower() in text.lower()
    """,
    )
    add(
        "Replace every space in the given string with an underscore in Python.",
        """
        text = "hello big world"
        print(text.replace(" ", "_"))  # hello_big_world
    """,
        "hello big world",
    )
    add(
        "Count in Python how many times the letter occurs in the given word.",
        """
        word = "banana"
        print(word.count("a"))  # 3
    """,
        "word: banana, letter: a",
    )
    add(
        "Write a bubble sort function in Python that sorts a list in place.",
        """
        def bubble_sort(items):
            n = len(items)
            for end in range(n - 1, 0, -1):
                for i in range(end):
                    if items[i] > items[i + 1]:
                        items[i], items[i + 1] = items[i + 1], items[i]
            return items
    """,
    )
    add(
        "Write an insertion sort function in Python.",
        """
        def insertion_sort(items):
            for i in range(1, len(items)):
                current = items[i]
                j = i - 1
                while j >= 0 and items[j] > current:
                    items[j + 1] = items[j]
                    j -= 1
                items[j + 1] = current
            return items
    """,
    )
    add(
        "Write a selection sort function in Python.",
        """
        def selection_sort(items):
            for i in range(len(items)):
                smallest = min(range(i, len(items)), key=items.__getitem__)
                items[i], items[smallest] = items[smallest], items[i]
            return items
    """,
    )
    add(
        "Write a Python function that raises a number to a non-negative integer power without using ** or pow().",
        """
        def power(base: float, exponent: int) -> float:
            result = 1
            for _ in range(exponent):
                result *= base
            return result
    """,
    )
    for radius in ("7", "2.5"):
        add(
            "Compute the area of a circle with the given radius in Python.",
            """
            import math

            radius = @radius@
            print(round(math.pi * radius**2, 2))
        """,
            radius,
            radius=radius,
        )
    add(
        "Write a Python function that returns the Euclidean distance between two points in the plane.",
        """
        import math


        def distance(p: tuple[float, float], q: tuple[float, float]) -> float:
            return math.hypot(q[0] - p[0], q[1] - p[1])
    """,
    )
    for k in (1, 2, 3):
        add(
            f"Write a Python function that rotates a list to the right by {k} positions.",
            """
            def rotate_right_@k@(items):
                if not items:
                    return items
                shift = @k@ % len(items)
                return items[-shift:] + items[:-shift] if shift else list(items)
        """,
            k=k,
        )
    add(
        "Write a Python function that splits a list into chunks of size n.",
        """
        def chunks(items, n):
            return [items[i:i + n] for i in range(0, len(items), n)]
    """,
    )
    add(
        "Write a Python function that checks whether all characters in a string are unique.",
        """
        def all_unique(text: str) -> bool:
            return len(set(text)) == len(text)
    """,
    )
    add(
        "Write a Python function that counts the uppercase letters in a string.",
        """
        def count_upper(text: str) -> int:
            return sum(1 for char in text if char.isupper())
    """,
    )
    add(
        "Write a Python function that returns the common elements of two lists without duplicates.",
        """
        def common_elements(first, second):
            return sorted(set(first) & set(second))
    """,
    )
    add(
        "Write a Python function that removes all whitespace from a string.",
        """
        def strip_whitespace(text: str) -> str:
            return "".join(text.split())
    """,
    )
    add(
        "Write a Python program that reads an integer from the user and prints whether it is even or odd.",
        """
        number = int(input("Enter an integer: "))
        if number % 2 == 0:
            print("even")
        else:
            print("odd")
    """,
    )
    add(
        "Create a Python dictionary comprehension that maps each number from 1 to 5 to its cube.",
        """
        cubes = {n: n**3 for n in range(1, 6)}
        print(cubes)
    """,
    )
    add(
        "Write a Python function that returns the n largest elements of a list.",
        """
        import heapq


        def top_n(values, n):
            return heapq.nlargest(n, values)
    """,
    )
    add(
        "Write a Python function that checks whether a list is sorted in non-decreasing order.",
        """
        def is_sorted(values) -> bool:
            return all(a <= b for a, b in zip(values, values[1:]))
    """,
    )
    add(
        "Write a Python function that returns the running total of a list of numbers.",
        """
        from itertools import accumulate


        def running_total(numbers):
            return list(accumulate(numbers))
    """,
    )
    add(
        "Write a Python function that returns the median of a list of numbers.",
        """
        def median(numbers):
            ordered = sorted(numbers)
            mid = len(ordered) // 2
            if len(ordered) % 2:
                return ordered[mid]
            return (ordered[mid - 1] + ordered[mid]) / 2
    """,
    )
    add(
        "Find the median of the following numbers in Python.",
        """
        from statistics import median

        print(median([7, 1, 4, 9, 3]))  # 4
    """,
        "[7, 1, 4, 9, 3]",
    )
    add(
        "Write a Python function that counts how many times a value appears in a list.",
        """
        def occurrences(items, value) -> int:
            return sum(1 for item in items if item == value)
    """,
    )
    add(
        "Write a Python function that returns a string with its characters sorted alphabetically.",
        """
        def sort_letters(text: str) -> str:
            return "".join(sorted(text))
    """,
    )
    add(
        "Write a Python function that returns the number of days between two dates given as ISO strings.",
        """
        from datetime import date


        def days_between(start: str, end: str) -> int:
            return abs((date.fromisoformat(end) - date.fromisoformat(start)).days)
    """,
    )
    add(
        "Parse the given JSON string in Python and print the value of the name field.",
        """
        import json

        payload = '{"name": "Ada", "year": 1815}'
        print(json.loads(payload)["name"])  # Ada
    """,
        '{"name": "Ada", "year": 1815}',
    )
    add(
        "Write a Python function that converts a decimal integer to its binary representation as a string.",
        """
        def to_binary(n: int) -> str:
            if n == 0:
                return "0"
            bits = []
            while n > 0:
                bits.append(str(n % 2))
                n //= 2
            return "".join(reversed(bits))
    """,
    )
    add(
        "Convert the given binary string to a decimal integer in Python.",
        """
        print(int("101101", 2))  # 45
    """,
        "101101",
    )
    add(
        "Sort the following list of words by length in Python.",
        """
        words = ["pear", "fig", "banana", "kiwi"]
        print(sorted(words, key=len))  # ['fig', 'pear', 'kiwi', 'banana']
    """,
        "['pear', 'fig', 'banana', 'kiwi']",
    )
    add(
        "Count the even numbers in the given list using Python.",
        """
        numbers = [2, 7, 10, 13, 18]
        print(sum(1 for n in numbers if n % 2 == 0))  # 3
    """,
        "[2, 7, 10, 13, 18]",
    )
    add(
        "Find the index of the first occurrence of the value in the Python list.",
        """
        values = [5, 3, 8, 3]
        print(values.index(3))  # 1
    """,
        "list: [5, 3, 8, 3], value: 3",
    )
    add(
        "Split the following comma-separated string into a Python list of trimmed items.",
        """
        text = "red, green , blue"
        items = [part.strip() for part in text.split(",")]
        print(items)  # ['red', 'green', 'blue']
    """,
        "red, green , blue",
    )
    add(
        "Compute the product of the numbers in the given list with Python.",
        """
        import math

        print(math.prod([2, 3, 7]))  # 42
    """,
        "[2, 3, 7]",
    )
    add(
        "Combine the two given lists into a dictionary in Python.",
        """
        keys = ["a", "b", "c"]
        values = [1, 2, 3]
        print(dict(zip(keys, values)))  # {'a': 1, 'b': 2, 'c': 3}
    """,
        "keys: ['a', 'b', 'c'], values: [1, 2, 3]",
    )
    add(
        "Find the length of the longest string in the given list using Python.",
        """
        words = ["sun", "planet", "moon"]
        print(max(len(word) for word in words))  # 6
    """,
        "['sun', 'planet', 'moon']",
    )
    for n, parity in ((17, "odd"), (42, "even")):
        add(
            "Print whether the given number is even or odd in Python.",
            """
            n = @n@
            print("even" if n % 2 == 0 else "odd")  # @parity@
        """,
            str(n),
            n=n,
            parity=parity,
        )
    add(
        "Extract the domain part of the given email address in Python.",
        """
        email = "ada@example.org"
        print(email.split("@", 1)[1])  # example.org
    """,
        "ada@example.org",
    )
    add(
        "Calculate in Python the compound amount for the given principal, yearly rate and number of years.",
        """
        principal = 1000
        rate = 0.05
        years = 3
        amount = principal * (1 + rate) ** years
        print(round(amount, 2))  # 1157.63
    """,
        "principal: 1000, rate: 5%, years: 3",
    )
    add(
        "Remove the vowels from the given string in Python.",
        """
        word = "automation"
        print("".join(char for char in word if char not in "aeiou"))  # tmtn
    """,
        "automation",
    )
    return tasks


def _javascript_tasks() -> list[Task]:
    tasks: list[Task] = []

    def add(instruction: str, code: str, input_text: str = "", **values: object) -> None:
        tasks.append(Task("javascript", instruction, input_text, _code(code, **values)))

    add(
        "Write a JavaScript function that reverses a string.",
        """
        function reverseString(str) {
          return str.split("").reverse().join("");
        }
    """,
    )
    add(
        "Write a JavaScript function that returns the sum of an array of numbers.",
        """
        function sumArray(numbers) {
          return numbers.reduce((total, n) => total + n, 0);
        }
    """,
    )
    add(
        "Write a JavaScript function that checks whether a number is prime.",
        """
        function isPrime(n) {
          if (n < 2) return false;
          for (let d = 2; d * d <= n; d++) {
            if (n % d === 0) return false;
          }
          return true;
        }
    """,
    )
    add(
        "Write a recursive JavaScript function that computes the factorial of n.",
        """
        function factorial(n) {
          return n <= 1 ? 1 : n * factorial(n - 1);
        }
    """,
    )
    add(
        "Write a JavaScript function that returns an array with the first n Fibonacci numbers.",
        """
        function fibonacci(n) {
          const sequence = [];
          let a = 0;
          let b = 1;
          while (sequence.length < n) {
            sequence.push(a);
            [a, b] = [b, a + b];
          }
          return sequence;
        }
    """,
    )
    add(
        "Write a JavaScript function that counts the vowels in a string.",
        """
        function countVowels(text) {
          const matches = text.match(/[aeiou]/gi);
          return matches ? matches.length : 0;
        }
    """,
    )
    add(
        "Find the largest number in the given array using JavaScript.",
        """
        const values = [4, 19, 7, 11];
        console.log(Math.max(...values)); // 19
    """,
        "[4, 19, 7, 11]",
    )
    add(
        "Write an arrow function in JavaScript that converts Celsius to Fahrenheit.",
        """
        const celsiusToFahrenheit = (celsius) => (celsius * 9) / 5 + 32;
    """,
    )
    add(
        "Write a JavaScript function that checks whether a string is a palindrome, ignoring case.",
        """
        function isPalindrome(text) {
          const normalized = text.toLowerCase();
          return normalized === normalized.split("").reverse().join("");
        }
    """,
    )
    add(
        "Remove the duplicates from the given array in JavaScript.",
        """
        const values = [1, 2, 2, 3, 3, 3];
        const unique = [...new Set(values)];
        console.log(unique); // [1, 2, 3]
    """,
        "[1, 2, 2, 3, 3, 3]",
    )
    add(
        "Write a JavaScript function that counts the words in a sentence.",
        """
        function wordCount(sentence) {
          const words = sentence.trim().split(/\\s+/);
          return words[0] === "" ? 0 : words.length;
        }
    """,
    )
    add(
        "Write a JavaScript function that capitalizes the first letter of every word in a string.",
        """
        function capitalizeWords(text) {
          return text.replace(/\\b\\w/g, (letter) => letter.toUpperCase());
        }
    """,
    )
    add(
        "Flatten the given nested array in JavaScript.",
        """
        const nested = [1, [2, [3, [4]]], 5];
        console.log(nested.flat(Infinity)); // [1, 2, 3, 4, 5]
    """,
        "[1, [2, [3, [4]]], 5]",
    )
    add(
        "Write a JavaScript function that returns a promise which resolves after a given number of milliseconds.",
        """
        function sleep(ms) {
          return new Promise((resolve) => setTimeout(resolve, ms));
        }
    """,
    )
    add(
        "Use the JavaScript filter method to keep only the even numbers of the given array.",
        """
        const numbers = [3, 8, 15, 22, 42, 7];
        const evens = numbers.filter((n) => n % 2 === 0);
        console.log(evens); // [8, 22, 42]
    """,
        "[3, 8, 15, 22, 42, 7]",
    )
    add(
        "Use map in JavaScript to double every number in an array.",
        """
        const doubled = [1, 2, 3, 4].map((n) => n * 2);
        console.log(doubled);
    """,
    )
    add(
        "Sort the given array of numbers in ascending numeric order in JavaScript.",
        """
        const numbers = [40, 1, 5, 200];
        numbers.sort((a, b) => a - b);
        console.log(numbers); // [1, 5, 40, 200]
    """,
        "[40, 1, 5, 200]",
    )
    add(
        "Write a JavaScript function that returns a random integer between min and max, inclusive.",
        """
        function randomInt(min, max) {
          return Math.floor(Math.random() * (max - min + 1)) + min;
        }
    """,
    )
    add(
        "Write a JavaScript function that splits an array into chunks of a given size.",
        """
        function chunk(items, size) {
          const result = [];
          for (let i = 0; i < items.length; i += size) {
            result.push(items.slice(i, i + size));
          }
          return result;
        }
    """,
    )
    add(
        "Write a JavaScript function range(start, end) returning the integers from start up to end, exclusive.",
        """
        function range(start, end) {
          return Array.from({ length: Math.max(end - start, 0) }, (_, i) => start + i);
        }
    """,
    )
    add(
        "Write a JavaScript function that computes the greatest common divisor of two integers.",
        """
        function gcd(a, b) {
          while (b !== 0) {
            [a, b] = [b, a % b];
          }
          return Math.abs(a);
        }
    """,
    )
    add(
        "Write a binary search function in JavaScript that returns the index of a target in a sorted array, or -1.",
        """
        function binarySearch(items, target) {
          let low = 0;
          let high = items.length - 1;
          while (low <= high) {
            const mid = Math.floor((low + high) / 2);
            if (items[mid] === target) return mid;
            if (items[mid] < target) low = mid + 1;
            else high = mid - 1;
          }
          return -1;
        }
    """,
    )
    add(
        "Write a debounce helper in JavaScript that delays calls until a pause of the given length.",
        """
        function debounce(fn, wait) {
          let timer;
          return (...args) => {
            clearTimeout(timer);
            timer = setTimeout(() => fn(...args), wait);
          };
        }
    """,
    )
    add(
        "Count the keys of the given object in JavaScript.",
        """
        const person = { name: "Ada", age: 36, city: "London" };
        console.log(Object.keys(person).length); // 3
    """,
        "{ name: 'Ada', age: 36, city: 'London' }",
    )
    add(
        "Create a JavaScript class Counter with increment, decrement and reset methods.",
        """
        class Counter {
          constructor() {
            this.value = 0;
          }

          increment() {
            this.value += 1;
          }

          decrement() {
            this.value -= 1;
          }

          reset() {
            this.value = 0;
          }
        }
    """,
    )
    add(
        "Write a JavaScript function that returns true when a year is a leap year.",
        """
        function isLeapYear(year) {
          return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
        }
    """,
    )
    add(
        "Reverse the order of the words in the given sentence using JavaScript.",
        """
        const sentence = "hello brave new world";
        console.log(sentence.split(" ").reverse().join(" ")); // "world new brave hello"
    """,
        "hello brave new world",
    )
    add(
        "Compute the average of the given array in JavaScript.",
        """
        const scores = [72, 88, 95, 61];
        const average = scores.reduce((sum, n) => sum + n, 0) / scores.length;
        console.log(average); // 79
    """,
        "[72, 88, 95, 61]",
    )
    for limit, divisor in ((50, 7), (100, 9)):
        add(
            f"Write JavaScript code that collects the numbers from 1 to {limit} that are divisible by {divisor}.",
            """
            const multiples = [];
            for (let i = 1; i <= @limit@; i++) {
              if (i % @divisor@ === 0) multiples.push(i);
            }
            console.log(multiples);
        """,
            limit=limit,
            divisor=divisor,
        )
    return tasks


def _sql_tasks() -> list[Task]:
    rows = [
        (
            "Write a SQL query that selects all employees whose salary is greater than 50000.",
            "",
            "SELECT * FROM employees WHERE salary > 50000;",
        ),
        (
            "Write a SQL query that lists the names of the customers who live in the given city.",
            "Lisbon",
            "SELECT name FROM customers WHERE city = 'Lisbon';",
        ),
        (
            "Write a SQL query that counts the orders placed by each customer.",
            "",
            "SELECT customer_id, COUNT(*) AS order_count FROM orders GROUP BY customer_id;",
        ),
        (
            "Write a SQL query that returns the five most expensive products.",
            "",
            "SELECT name, price FROM products ORDER BY price DESC LIMIT 5;",
        ),
        (
            "Write a SQL query that computes the average salary in each department.",
            "",
            "SELECT department, AVG(salary) AS average_salary FROM employees GROUP BY department;",
        ),
        (
            "Write a SQL query that deletes all orders placed before 2020.",
            "",
            "DELETE FROM orders WHERE order_date < '2020-01-01';",
        ),
        (
            "Write a SQL query that raises the salary of every employee in the Sales department by 5 percent.",
            "",
            "UPDATE employees SET salary = salary * 1.05 WHERE department = 'Sales';",
        ),
        (
            "Write a SQL statement that inserts the given product into the products table.",
            "name: Desk Lamp, price: 24.99, category: Lighting",
            "INSERT INTO products (name, price, category) VALUES ('Desk Lamp', 24.99, 'Lighting');",
        ),
        (
            "Write a SQL query that lists each order together with the name of the customer who placed it.",
            "",
            (
                "SELECT orders.id, customers.name, orders.total FROM orders "
                "JOIN customers ON customers.id = orders.customer_id;"
            ),
        ),
        (
            "Write a SQL query that returns the distinct cities of all customers.",
            "",
            "SELECT DISTINCT city FROM customers;",
        ),
        (
            "Write a SQL query that selects the students whose grade is between 70 and 90.",
            "",
            "SELECT name, grade FROM students WHERE grade BETWEEN 70 AND 90;",
        ),
        (
            "Write a SQL query that finds the customers whose name starts with the given letter.",
            "A",
            "SELECT * FROM customers WHERE name LIKE 'A%';",
        ),
        (
            "Write a SQL query that finds the customers with no email address on record.",
            "",
            "SELECT id, name FROM customers WHERE email IS NULL;",
        ),
        (
            "Given the table below, write a SQL query that returns the department with the highest total salary.",
            "employees(id, name, department, salary, hire_date)",
            "SELECT department FROM employees GROUP BY department ORDER BY SUM(salary) DESC LIMIT 1;",
        ),
    ]
    return [Task("sql", instruction, input_text, output) for instruction, input_text, output in rows]


def _concept_tasks() -> list[Task]:
    rows = [
        (
            "What is the difference between a list and a tuple in Python?",
            "",
            (
                "A list is mutable, so items can be added, removed or changed after creation, while a tuple is "
                "immutable; tuples are therefore hashable when their items are and can be used as dictionary keys."
            ),
        ),
        (
            "Explain what a hash table is in one or two sentences.",
            "",
            (
                "A hash table stores key-value pairs in an array of buckets and uses a hash function to turn each "
                "key into a bucket index, which makes lookups, inserts and deletes take constant time on average."
            ),
        ),
        (
            "What is the time complexity of binary search on a sorted array?",
            "",
            (
                "Binary search runs in O(log n) time because every comparison halves the range that can still "
                "contain the target."
            ),
        ),
        (
            "What is recursion in programming?",
            "",
            (
                "Recursion is when a function solves a problem by calling itself on smaller instances of the same "
                "problem until it reaches a base case that can be answered directly."
            ),
        ),
        (
            "Explain the difference between == and === in JavaScript.",
            "",
            (
                "== compares values after converting them to a common type, so 0 == '0' is true, while === also "
                "requires the types to match, so 0 === '0' is false."
            ),
        ),
        (
            "What is a primary key in a relational database?",
            "",
            (
                "A primary key is a column or set of columns whose values uniquely identify each row of a table; it "
                "cannot contain NULL values or duplicates."
            ),
        ),
        ("Identify the data type of the following Python value.", "3.14", "It is a float."),
        ("Identify the data type of the following Python value.", "(1, 2)", "It is a tuple."),
        (
            "What will the following Python code print?",
            "print(len('hello') * 2)",
            "It prints 10, because len('hello') is 5 and 5 * 2 is 10.",
        ),
        (
            "Give the average-case time complexity of the following operation.",
            "Looking up a key in a Python dictionary",
            "O(1) on average, because Python dictionaries are implemented as hash tables.",
        ),
        ("What does the acronym SQL stand for?", "", "SQL stands for Structured Query Language."),
        (
            "What is the purpose of a virtual environment in Python?",
            "",
            (
                "A virtual environment gives a project its own interpreter and installed packages, so its "
                "dependencies do not clash with those of other projects or of the system Python."
            ),
        ),
    ]
    return [Task("text", instruction, input_text, output) for instruction, input_text, output in rows]


_SQL_SCHEMA = """
CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, department TEXT, salary REAL, hire_date TEXT);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, email TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL, order_date TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, category TEXT);
CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT, grade INTEGER);
"""


def _check_tasks(tasks: list[Task]) -> None:
    """Fail loudly on any row whose code would not parse or that repeats another."""
    # SQLite ships with Python, so SQL rows can be checked against a real parser
    # without modifying anything: EXPLAIN compiles the statement but never runs it.
    connection = sqlite3.connect(":memory:")
    try:
        connection.executescript(_SQL_SCHEMA)
        seen: set[tuple[str, str]] = set()
        for task in tasks:
            key = (task.instruction, task.input)
            if key in seen:
                raise SystemExit(f"duplicate CodeAlpaca row: {key!r}")
            seen.add(key)
            if not task.instruction or not task.output:
                raise SystemExit(f"empty field in CodeAlpaca row: {key!r}")
            if task.language == "python":
                try:
                    compile(task.output, "<fixture>", "exec")
                except SyntaxError as error:
                    raise SystemExit(f"Python row does not compile: {task.instruction!r}: {error}") from error
            elif task.language == "sql":
                try:
                    connection.execute("EXPLAIN " + task.output)
                except sqlite3.Error as error:
                    raise SystemExit(f"SQL row does not parse: {task.instruction!r}: {error}") from error
    finally:
        connection.close()


def build_codealpaca() -> list[dict[str, object]]:
    python_pool = _python_tasks()
    others = _javascript_tasks() + _sql_tasks() + _concept_tasks()
    _check_tasks(python_pool + others)

    # The Python pool is larger than needed; a seeded sample keeps the mix of
    # languages fixed while the shuffle spreads the task kinds through the file.
    rng = random.Random(SEED)
    python_count = CODEALPACA_ROWS - len(others)
    if python_count > len(python_pool):
        raise SystemExit(f"only {len(python_pool)} Python tasks, {python_count} needed")
    keep = sorted(rng.sample(range(len(python_pool)), python_count))
    chosen = [python_pool[i] for i in keep] + others
    rng.shuffle(chosen)
    return [{"instruction": t.instruction, "input": t.input, "output": t.output} for t in chosen]


# ---------------------------------------------------------------------------
# tiny-codes-shaped rows
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    main_topic: str
    subtopic: str
    # Threshold check: ``at_most`` means readings at or below the limit pass.
    metric: tuple[str, ...]
    metric_label: str
    unit: str
    limit: int
    at_most: bool
    sample: int
    ok: str
    bad: str
    check_task: str
    # Loop computing a total, compared with a goal afterwards.
    items: tuple[str, ...]
    entries: tuple[tuple[str, int], ...]
    total_unit: str
    goal: int
    reached: str
    below: str
    total_task: str
    # Switch/match on a category.
    category: tuple[str, ...]
    cases: tuple[tuple[str, str], ...]
    fallback: str
    category_task: str


DOMAINS = (
    Domain(
        main_topic="Food Safety",
        subtopic="Refrigerator Storage",
        metric=("fridge", "temp"),
        metric_label="Fridge temperature",
        unit="degrees C",
        limit=5,
        at_most=True,
        sample=7,
        ok="Safe for storing food.",
        bad="Too warm, lower the thermostat.",
        check_task="whether a fridge temperature is safe for storing food",
        items=("sodium", "by", "meal"),
        entries=(("breakfast", 450), ("lunch", 900), ("dinner", 1100)),
        total_unit="mg",
        goal=2300,
        reached="At or above the daily sodium limit.",
        below="Below the daily sodium limit.",
        total_task="the total sodium across a day of meals, comparing it with a daily limit",
        category=("food", "kind"),
        cases=(
            ("raw meat", "Keep it on the bottom shelf."),
            ("dairy", "Keep it in the main compartment."),
            ("produce", "Keep it in the crisper drawer."),
        ),
        fallback="Check the label for storage advice.",
        category_task="storage advice for a kind of food",
    ),
    Domain(
        main_topic="Hand Hygiene",
        subtopic="Washing Technique",
        metric=("scrub", "seconds"),
        metric_label="Scrub time",
        unit="seconds",
        limit=20,
        at_most=False,
        sample=15,
        ok="Hands were scrubbed long enough.",
        bad="Scrub a little longer next time.",
        check_task="whether a hand wash lasted long enough",
        items=("washes", "by", "period"),
        entries=(("morning", 3), ("afternoon", 4), ("evening", 2)),
        total_unit="washes",
        goal=8,
        reached="Daily hand washing target reached.",
        below="Below the daily hand washing target.",
        total_task="the number of hand washes across a day, comparing it with a daily target",
        category=("setting",),
        cases=(
            ("kitchen", "Wash before and after handling food."),
            ("clinic", "Sanitize between patients."),
            ("office", "Wash after using shared equipment."),
        ),
        fallback="Wash with soap and water.",
        category_task="hand hygiene advice for a setting",
    ),
    Domain(
        main_topic="Personal Finance",
        subtopic="Monthly Budgeting",
        metric=("savings", "rate"),
        metric_label="Savings rate",
        unit="percent",
        limit=20,
        at_most=False,
        sample=12,
        ok="Savings rate is on track.",
        bad="Look for costs to trim this month.",
        check_task="whether a monthly savings rate meets a target",
        items=("monthly", "costs"),
        entries=(("rent", 1200), ("groceries", 350), ("transport", 120), ("utilities", 180)),
        total_unit="dollars",
        goal=2000,
        reached="Spending has reached the budget.",
        below="Spending is under the budget.",
        total_task="the total of a month of household costs, comparing it with the budget",
        category=("expense", "kind"),
        cases=(
            ("rent", "Fixed cost, pay it first."),
            ("groceries", "Variable cost, plan meals ahead."),
            ("entertainment", "Optional cost, set a monthly cap."),
        ),
        fallback="Record it as miscellaneous.",
        category_task="budgeting advice for a kind of expense",
    ),
    Domain(
        main_topic="Fitness",
        subtopic="Step Tracking",
        metric=("daily", "steps"),
        metric_label="Daily steps",
        unit="steps",
        limit=8000,
        at_most=False,
        sample=6500,
        ok="Step goal met.",
        bad="Add a short walk today.",
        check_task="whether a daily step count meets a goal",
        items=("walk", "steps"),
        entries=(("morning", 2500), ("lunch", 1800), ("evening", 3200)),
        total_unit="steps",
        goal=8000,
        reached="Daily step goal reached.",
        below="Keep walking to reach the goal.",
        total_task="the total steps from several walks, comparing it with a daily goal",
        category=("activity",),
        cases=(
            ("walking", "Low intensity, good for recovery."),
            ("running", "High intensity, drink enough water."),
            ("cycling", "Moderate intensity, wear a helmet."),
        ),
        fallback="Log the activity by hand.",
        category_task="tips for a type of activity",
    ),
    Domain(
        main_topic="Weather",
        subtopic="Outdoor Events",
        metric=("wind", "speed"),
        metric_label="Wind speed",
        unit="km/h",
        limit=50,
        at_most=True,
        sample=62,
        ok="Safe to hold the event outdoors.",
        bad="Move the event indoors.",
        check_task="whether the wind speed allows an outdoor event",
        items=("daily", "rainfall"),
        entries=(("monday", 12), ("tuesday", 0), ("wednesday", 7), ("thursday", 21)),
        total_unit="mm",
        goal=40,
        reached="Heavy week, clear the drains.",
        below="Rainfall is within the normal range.",
        total_task="the total rainfall over several days, comparing it with a flood watch level",
        category=("alert", "level"),
        cases=(
            ("green", "No action needed."),
            ("yellow", "Stay informed and secure loose items."),
            ("red", "Stay indoors and follow official guidance."),
        ),
        fallback="Unknown level, check the forecast.",
        category_task="what to do for a weather alert level",
    ),
    Domain(
        main_topic="Dental Care",
        subtopic="Brushing Habits",
        metric=("brush", "minutes"),
        metric_label="Brushing time",
        unit="minutes",
        limit=2,
        at_most=False,
        sample=1,
        ok="Brushing time is adequate.",
        bad="Brush for a full two minutes.",
        check_task="whether a brushing session was long enough",
        items=("brushing", "sessions"),
        entries=(("monday", 2), ("tuesday", 2), ("wednesday", 1), ("thursday", 2)),
        total_unit="sessions",
        goal=8,
        reached="On track for the week.",
        below="A few sessions were missed.",
        total_task="the brushing sessions over several days, comparing them with a target",
        category=("floss", "type"),
        cases=(
            ("waxed", "Slides easily between tight teeth."),
            ("unwaxed", "Thin, good for small gaps."),
            ("tape", "Wide, gentle on sensitive gums."),
        ),
        fallback="Ask a dentist which floss suits you.",
        category_task="usage tips for a type of dental floss",
    ),
    Domain(
        main_topic="Sleep",
        subtopic="Bedtime Routine",
        metric=("sleep", "hours"),
        metric_label="Sleep",
        unit="hours",
        limit=7,
        at_most=False,
        sample=6,
        ok="Enough sleep last night.",
        bad="Aim for an earlier bedtime.",
        check_task="whether the hours slept last night were enough",
        items=("screen", "minutes"),
        entries=(("phone", 30), ("tablet", 20), ("television", 45)),
        total_unit="minutes",
        goal=60,
        reached="Too much screen time before bed.",
        below="Screen time before bed is reasonable.",
        total_task="the screen time before bed, comparing it with an evening limit",
        category=("chronotype",),
        cases=(
            ("early", "Wind down around nine thirty."),
            ("late", "Dim the lights an hour before bed."),
            ("mixed", "Keep the same schedule every day."),
        ),
        fallback="Track sleep for a week first.",
        category_task="a bedtime suggestion for a chronotype",
    ),
    Domain(
        main_topic="Home Energy",
        subtopic="Thermostat Settings",
        metric=("setpoint",),
        metric_label="Heating setpoint",
        unit="degrees C",
        limit=21,
        at_most=True,
        sample=24,
        ok="Setpoint is energy efficient.",
        bad="Lower the setpoint to save energy.",
        check_task="whether a heating setpoint is energy efficient",
        items=("appliance", "kwh"),
        entries=(("heater", 12), ("fridge", 2), ("washer", 3)),
        total_unit="kWh",
        goal=15,
        reached="Usage is at or above the target.",
        below="Usage is below the target.",
        total_task="the daily energy use of several appliances, comparing it with a usage target",
        category=("season",),
        cases=(
            ("winter", "Heat to 20 during the day."),
            ("summer", "Cool only when above 26."),
            ("spring", "Open windows instead of heating."),
        ),
        fallback="Use the default schedule.",
        category_task="a thermostat schedule for a season",
    ),
    Domain(
        main_topic="Cybersecurity",
        subtopic="Password Hygiene",
        metric=("password", "length"),
        metric_label="Password length",
        unit="characters",
        limit=12,
        at_most=False,
        sample=9,
        ok="Password length is acceptable.",
        bad="Choose a longer passphrase.",
        check_task="whether a password is long enough",
        items=("failed", "logins"),
        entries=(("laptop", 2), ("phone", 1), ("tablet", 3)),
        total_unit="attempts",
        goal=5,
        reached="Lock the account and alert the owner.",
        below="No lockout needed.",
        total_task="the failed login attempts across devices, comparing them with a lockout threshold",
        category=("account", "role"),
        cases=(
            ("admin", "Require a hardware key."),
            ("editor", "Require an authenticator app."),
            ("viewer", "Require a strong password."),
        ),
        fallback="Deny access until a role is assigned.",
        category_task="security requirements for an account role",
    ),
    Domain(
        main_topic="Road Safety",
        subtopic="Cycling Commute",
        metric=("speed",),
        metric_label="Speed",
        unit="km/h",
        limit=30,
        at_most=True,
        sample=34,
        ok="Speed is fine for this zone.",
        bad="Slow down, this is a 30 zone.",
        check_task="whether a cyclist's speed suits a 30 km/h zone",
        items=("commute", "km"),
        entries=(("monday", 8), ("tuesday", 8), ("wednesday", 12), ("thursday", 8)),
        total_unit="km",
        goal=40,
        reached="Weekly cycling goal reached.",
        below="A bit short of the weekly goal.",
        total_task="the distance cycled over a work week, comparing it with a weekly goal",
        category=("signal",),
        cases=(
            ("red", "Stop behind the line."),
            ("amber", "Stop if it is safe to do so."),
            ("green", "Proceed and watch for turning cars."),
        ),
        fallback="Treat the signal as broken and yield.",
        category_task="what a cyclist should do at a traffic signal",
    ),
    Domain(
        main_topic="Hydration",
        subtopic="Water Intake",
        metric=("water", "ml"),
        metric_label="Water intake",
        unit="ml",
        limit=2000,
        at_most=False,
        sample=1500,
        ok="Hydration goal met.",
        bad="Drink another glass of water.",
        check_task="whether daily water intake meets a goal",
        items=("drinks",),
        entries=(("morning", 500), ("lunch", 400), ("afternoon", 600)),
        total_unit="ml",
        goal=2000,
        reached="Hydration goal reached.",
        below="Keep a bottle nearby.",
        total_task="the water consumed across a day, comparing it with a hydration goal",
        category=("beverage",),
        cases=(
            ("water", "Best everyday choice."),
            ("coffee", "Counts, but limit late cups."),
            ("juice", "Counts, but watch the sugar."),
        ),
        fallback="Check the label.",
        category_task="hydration notes for a beverage",
    ),
    Domain(
        main_topic="Plant Care",
        subtopic="Watering Schedule",
        metric=("soil", "moisture"),
        metric_label="Soil moisture",
        unit="percent",
        limit=30,
        at_most=False,
        sample=22,
        ok="Soil is moist enough.",
        bad="Water the plant today.",
        check_task="whether a potted plant needs watering based on soil moisture",
        items=("water", "per", "plant"),
        entries=(("fern", 250), ("cactus", 50), ("basil", 150)),
        total_unit="ml",
        goal=400,
        reached="Refill the watering can first.",
        below="One can is enough.",
        total_task="the water given to several plants, comparing it with the watering can volume",
        category=("light", "need"),
        cases=(
            ("shade", "Place it in a north-facing room."),
            ("partial", "Place it near an east window."),
            ("full", "Place it in a south-facing window."),
        ),
        fallback="Start with bright indirect light.",
        category_task="placement advice for a light need",
    ),
    Domain(
        main_topic="Laundry",
        subtopic="Fabric Care",
        metric=("wash", "temp"),
        metric_label="Wash temperature",
        unit="degrees C",
        limit=40,
        at_most=True,
        sample=60,
        ok="Safe for delicate fabrics.",
        bad="Too hot for delicate fabrics.",
        check_task="whether a wash temperature is safe for delicate fabrics",
        items=("load", "kg"),
        entries=(("towels", 3), ("shirts", 2), ("bedding", 4)),
        total_unit="kg",
        goal=8,
        reached="Split the laundry into two loads.",
        below="Everything fits in one load.",
        total_task="the weight of a laundry load, comparing it with the machine capacity",
        category=("fabric",),
        cases=(
            ("wool", "Hand wash cold and dry flat."),
            ("cotton", "Machine wash warm."),
            ("silk", "Hand wash gently or dry clean."),
        ),
        fallback="Follow the care label.",
        category_task="care instructions for a fabric",
    ),
    Domain(
        main_topic="Travel",
        subtopic="Packing",
        metric=("bag", "kg"),
        metric_label="Bag weight",
        unit="kg",
        limit=23,
        at_most=True,
        sample=26,
        ok="Bag is within the allowance.",
        bad="Move items to a second bag.",
        check_task="whether a checked bag is within the weight allowance",
        items=("packed", "items"),
        entries=(("clothes", 4), ("shoes", 2), ("toiletries", 1), ("laptop", 2)),
        total_unit="kg",
        goal=8,
        reached="Over the carry-on limit.",
        below="Fits the carry-on limit.",
        total_task="the weight of packed items, comparing it with a carry-on limit",
        category=("trip", "type"),
        cases=(
            ("beach", "Pack sunscreen and a hat."),
            ("business", "Pack a charger and formal shoes."),
            ("hiking", "Pack layers and a first aid kit."),
        ),
        fallback="Pack the basics.",
        category_task="packing tips for a type of trip",
    ),
    Domain(
        main_topic="Eye Health",
        subtopic="Screen Breaks",
        metric=("minutes", "since", "break"),
        metric_label="Minutes since last break",
        unit="minutes",
        limit=20,
        at_most=True,
        sample=35,
        ok="No break needed yet.",
        bad="Look at something far away for a moment.",
        check_task="whether it is time for a screen break",
        items=("screen", "hours"),
        entries=(("work", 6), ("study", 2), ("leisure", 3)),
        total_unit="hours",
        goal=10,
        reached="Plan some screen-free time.",
        below="Screen time is within the limit.",
        total_task="the daily screen hours, comparing them with a personal limit",
        category=("symptom",),
        cases=(
            ("dryness", "Blink more often."),
            ("strain", "Increase text size and lower glare."),
            ("headache", "Take a longer break away from screens."),
        ),
        fallback="See an optometrist if it persists.",
        category_task="a simple response to an eye strain symptom",
    ),
    Domain(
        main_topic="Workplace Ergonomics",
        subtopic="Desk Setup",
        metric=("monitor", "cm"),
        metric_label="Monitor distance",
        unit="cm",
        limit=50,
        at_most=False,
        sample=40,
        ok="Monitor distance is comfortable.",
        bad="Move the monitor further back.",
        check_task="whether a monitor is placed far enough from the eyes",
        items=("standing", "minutes"),
        entries=(("morning", 20), ("midday", 15), ("afternoon", 25)),
        total_unit="minutes",
        goal=60,
        reached="Standing goal reached.",
        below="Stand up for a few more minutes.",
        total_task="the minutes spent standing during work blocks, comparing them with a daily goal",
        category=("posture",),
        cases=(
            ("slouching", "Sit back and support the lower back."),
            ("leaning", "Center the keyboard."),
            ("hunching", "Raise the monitor to eye level."),
        ),
        fallback="Take a short stretch break.",
        category_task="a correction for a posture problem",
    ),
)

KINDS = ("threshold", "total", "category")
VERBS = {
    "threshold": ("Check", "Determine", "Verify"),
    "total": ("Calculate", "Compute", "Track"),
    "category": ("Display", "Show", "Determine"),
}
THIRD_PERSON = {
    "Check": "checks",
    "Determine": "determines",
    "Verify": "verifies",
    "Calculate": "calculates",
    "Compute": "computes",
    "Track": "tracks",
    "Display": "displays",
    "Show": "shows",
}
ADJECTIVES = ("Basic", "Extreme", "High", "Low", "Careful", "Simple", "Practical", "Everyday", "Reliable", "Advanced")
SCENARIOS = (
    "for Daily Routines",
    "for Weekly Planning",
    "for Quick Decisions",
    "for a Shared Household",
    "for a Small Office",
    "for Habit Tracking",
    "for a Classroom Demo",
    "for Personal Use",
)
AUDIENCES = ("Beginners", "Students", "Hobbyists", "Engineers", "Analysts", "Teachers", "Parents", "Experts")
COMMON_SENSE = ("Safety", "Privacy", "Reliability", "Fairness", "Consent", "Trust", "Responsibility", "Transparency")


@dataclass(frozen=True)
class Language:
    name: str
    fence: str
    camel_case: bool
    forms: tuple[str, ...]
    loop: str
    switch: str
    switch_noun: str
    templates: dict[str, str]


# C++ and Java follow the two-space Google styles; besides being common, it
# keeps the tiny-codes file inside its size budget.
CPP_THRESHOLD = """\
#include <iostream>
#include <string>

const int kLimit = @limit@;  // @unit@

std::string @fn@(int @var@) {
  // Two outcomes: within the limit or not.
  if (@var@ @op@ kLimit) {
    return "@ok@";
  } else {
    return "@bad@";
  }
}

int main() {
  std::cout << @fn@(@sample@) << '\\n';
}"""

CPP_TOTAL = """\
#include <iostream>
#include <string>
#include <utility>
#include <vector>

int main() {
  const int goal = @goal@;
  const std::vector<std::pair<std::string, int>> @var@ = {
@entries@
  };
  int total = 0;
  // Sum first, then decide once.
  for (const auto& [name, amount] : @var@) {
    std::cout << name << ": " << amount << " @unit@\\n";
    total += amount;
  }
  if (total >= goal) {
    std::cout << "@reached@\\n";
  } else {
    std::cout << "@below@\\n";
  }
}"""

CPP_CATEGORY = """\
#include <initializer_list>
#include <iostream>
#include <string>

enum class @type@ { @enumerators@, Other };

std::string @fn@(@type@ @var@) {
  switch (@var@) {
@cases@
    default:  // anything unlisted
      return "@fallback@";
  }
}

int main() {
  for (@type@ @var@ : {@samples@}) {
    std::cout << @fn@(@var@) << '\\n';
  }
}"""

JAVA_THRESHOLD = """\
public class @cls@ {
  static final int LIMIT = @limit@;  // @unit@

  static String @fn@(int @var@) {
    // Two outcomes: within the limit or not.
    if (@var@ @op@ LIMIT) {
      return "@ok@";
    } else {
      return "@bad@";
    }
  }

  public static void main(String[] args) {
    System.out.println(@fn@(@sample@));
  }
}"""

JAVA_TOTAL = """\
public class @cls@ {
  public static void main(String[] args) {
    String[] names = {@names@};
    int[] amounts = {@amounts@};
    int total = 0;
    // Sum first, then decide once.
    for (int i = 0; i < names.length; i++) {
      System.out.println(names[i] + ": " + amounts[i] + " @unit@");
      total += amounts[i];
    }
    if (total >= @goal@) {
      System.out.println("@reached@");
    } else {
      System.out.println("@below@");
    }
  }
}"""

JAVA_CATEGORY = """\
public class @cls@ {
  static String @fn@(String @var@) {
    return switch (@var@) {
@cases@
      default -> "@fallback@";  // anything unlisted
    };
  }

  public static void main(String[] args) {
    for (String @var@ : new String[] {@samples@}) {
      System.out.println(@var@ + " -> " + @fn@(@var@));
    }
  }
}"""

RUBY_THRESHOLD = """\
LIMIT = @limit@ # @unit@

def @fn@(@var@)
  # Two outcomes: within the limit or not.
  if @var@ @op@ LIMIT
    '@ok@'
  else
    '@bad@'
  end
end

puts @fn@(@sample@)"""

RUBY_TOTAL = """\
@var@ = { @entries@ }
total = 0
# Sum first, then decide once.
@var@.each do |name, amount|
  puts "#{name}: #{amount} @unit@"
  total += amount
end
puts total >= @goal@ ? '@reached@' : '@below@'"""

RUBY_CATEGORY = """\
def @fn@(@var@)
  case @var@
@cases@
  else # anything unlisted
    '@fallback@'
  end
end

[@samples@].each { |@var@| puts "#{@var@} -> #{@fn@(@var@)}" }"""

RUST_THRESHOLD = """\
const LIMIT: i32 = @limit@; // @unit@

fn @fn@(@var@: i32) -> &'static str {
    // Two outcomes: within the limit or not.
    if @var@ @op@ LIMIT {
        "@ok@"
    } else {
        "@bad@"
    }
}

fn main() {
    println!("{}", @fn@(@sample@));
}"""

RUST_TOTAL = """\
fn main() {
    let @var@ = [@entries@];
    let mut total = 0;
    // Sum first, then decide once.
    for &(name, amount) in @var@.iter() {
        println!("{}: {} @unit@", name, amount);
        total += amount;
    }
    if total >= @goal@ {
        println!("@reached@");
    } else {
        println!("@below@");
    }
}"""

RUST_CATEGORY = """\
fn @fn@(@var@: &str) -> &'static str {
    match @var@ {
@cases@
        _ => "@fallback@", // anything unlisted
    }
}

fn main() {
    for @var@ in [@samples@] {
        println!("{} -> {}", @var@, @fn@(@var@));
    }
}"""

BASH_THRESHOLD = """\
#!/usr/bin/env bash
limit=@limit@ # @unit@

@fn@() {
  # Two outcomes: within the limit or not.
  if [ "$1" -@op@ "$limit" ]; then
    echo "@ok@"
  else
    echo "@bad@"
  fi
}

@fn@ @sample@"""

BASH_TOTAL = """\
#!/usr/bin/env bash
names=(@names@)
amounts=(@amounts@)
total=0
# Sum first, then decide once.
for i in "${!names[@]}"; do
  echo "${names[$i]}: ${amounts[$i]} @unit@"
  total=$((total + amounts[i]))
done
if [ "$total" -ge @goal@ ]; then
  echo "@reached@"
else
  echo "@below@"
fi"""

BASH_CATEGORY = """\
#!/usr/bin/env bash
@fn@() {
  case "$1" in
@cases@
    *) echo "@fallback@" ;; # anything unlisted
  esac
}

for @var@ in @samples@; do
  echo "$@var@ -> $(@fn@ "$@var@")"
done"""

PYTHON_THRESHOLD = """\
LIMIT = @limit@  # @unit@


def @fn@(@var@: int) -> str:
    # Two outcomes: within the limit or not.
    if @var@ @op@ LIMIT:
        return "@ok@"
    else:
        return "@bad@"


print(@fn@(@sample@))"""

PYTHON_TOTAL = """\
@var@ = {@entries@}
total = 0
# Sum first, then decide once.
for name, amount in @var@.items():
    print(f"{name}: {amount} @unit@")
    total += amount
print("@reached@" if total >= @goal@ else "@below@")"""

PYTHON_CATEGORY = """\
def @fn@(@var@: str) -> str:
    match @var@:
@cases@
        case _:  # anything unlisted
            return "@fallback@"


for @var@ in (@samples@):
    print(f"{@var@} -> {@fn@(@var@)}")"""

JS_THRESHOLD = """\
const LIMIT = @limit@; // @unit@

function @fn@(@var@) {
  // Two outcomes: within the limit or not.
  if (@var@ @op@ LIMIT) {
    return "@ok@";
  } else {
    return "@bad@";
  }
}

console.log(@fn@(@sample@));"""

JS_TOTAL = """\
const @var@ = { @entries@ };
let total = 0;
// Sum first, then decide once.
for (const [name, amount] of Object.entries(@var@)) {
  console.log(`${name}: ${amount} @unit@`);
  total += amount;
}
console.log(total >= @goal@ ? "@reached@" : "@below@");"""

JS_CATEGORY = """\
function @fn@(@var@) {
  switch (@var@) {
@cases@
    default: // anything unlisted
      return "@fallback@";
  }
}

for (const @var@ of [@samples@]) {
  console.log(`${@var@} -> ${@fn@(@var@)}`);
}"""


LANGUAGES = {
    "C++": Language(
        "C++",
        "cpp",
        False,
        ("snippet", "program", "code snippet", "module snippet"),
        "a range-based for loop",
        "a switch statement over an enum",
        "switch",
        {"threshold": CPP_THRESHOLD, "total": CPP_TOTAL, "category": CPP_CATEGORY},
    ),
    "Java": Language(
        "Java",
        "java",
        True,
        ("snippet", "program", "code snippet", "module snippet"),
        "a for-each loop over a map",
        "a switch expression",
        "switch expression",
        {"threshold": JAVA_THRESHOLD, "total": JAVA_TOTAL, "category": JAVA_CATEGORY},
    ),
    "Ruby": Language(
        "Ruby",
        "ruby",
        False,
        ("snippet", "program", "code snippet", "script"),
        "an each loop over a hash",
        "a case/when expression",
        "case/when expression",
        {"threshold": RUBY_THRESHOLD, "total": RUBY_TOTAL, "category": RUBY_CATEGORY},
    ),
    "Rust": Language(
        "Rust",
        "rust",
        False,
        ("snippet", "program", "code snippet", "module snippet"),
        "a for loop over an array",
        "a match expression",
        "match expression",
        {"threshold": RUST_THRESHOLD, "total": RUST_TOTAL, "category": RUST_CATEGORY},
    ),
    "Bash": Language(
        "Bash",
        "bash",
        False,
        ("script", "shell script", "snippet"),
        "a for loop over an array",
        "a case statement",
        "case statement",
        {"threshold": BASH_THRESHOLD, "total": BASH_TOTAL, "category": BASH_CATEGORY},
    ),
    "Python": Language(
        "Python",
        "python",
        False,
        ("snippet", "program", "code snippet", "script"),
        "a for loop over a dictionary",
        "a match statement",
        "match statement",
        {"threshold": PYTHON_THRESHOLD, "total": PYTHON_TOTAL, "category": PYTHON_CATEGORY},
    ),
    "JavaScript": Language(
        "JavaScript",
        "javascript",
        True,
        ("snippet", "program", "code snippet", "module"),
        "a for...of loop",
        "a switch statement",
        "switch",
        {"threshold": JS_THRESHOLD, "total": JS_TOTAL, "category": JS_CATEGORY},
    ),
}


def _identifier(words: tuple[str, ...], camel_case: bool) -> str:
    if camel_case:
        return words[0] + "".join(word.title() for word in words[1:])
    return "_".join(words)


def _pascal(words: tuple[str, ...] | list[str]) -> str:
    return "".join(word.title() for word in words)


def _quoted(labels: list[str], quote: str) -> str:
    return ", ".join(f"{quote}{label}{quote}" for label in labels)


def _check_domain(domain: Domain) -> None:
    texts = [
        domain.metric_label,
        domain.unit,
        domain.ok,
        domain.bad,
        domain.total_unit,
        domain.reached,
        domain.below,
        domain.fallback,
    ]
    texts += [name for name, _ in domain.entries]
    for label, message in domain.cases:
        texts += [label, message]
    for text in texts:
        if not _SAFE_TEXT.fullmatch(text):
            raise SystemExit(f"unsafe text in domain {domain.main_topic!r}: {text!r}")
    if "other" in [label for label, _ in domain.cases]:
        raise SystemExit(f"'other' is reserved for the fallback sample in {domain.main_topic!r}")


def _render_code(language: Language, kind: str, domain: Domain, verb: str) -> str:
    """Fill the language template for one (domain, kind) pair."""
    name = language.name
    camel = language.camel_case
    values: dict[str, object] = {"unit": domain.unit}
    if kind == "threshold":
        op = "<=" if domain.at_most else ">="
        if name == "Bash":
            op = "le" if domain.at_most else "ge"
        values.update(
            var=_identifier(domain.metric, camel),
            op=op,
            limit=domain.limit,
            sample=domain.sample,
            ok=domain.ok,
            bad=domain.bad,
            fn=_identifier((verb.lower(), *domain.metric), camel),
            cls=_pascal(domain.metric) + "Check",
        )
    elif kind == "total":
        entries = domain.entries
        per_language = {
            "C++": "\n".join(f'    {{"{k}", {v}}},' for k, v in entries),
            "Ruby": ", ".join(f"'{k}' => {v}" for k, v in entries),
            "Rust": ", ".join(f'("{k}", {v})' for k, v in entries),
            "Python": ", ".join(f'"{k}": {v}' for k, v in entries),
            "JavaScript": ", ".join(f"{k}: {v}" for k, v in entries),
        }
        separator = " " if name == "Bash" else ", "
        values.update(
            var=_identifier(domain.items, camel),
            goal=domain.goal,
            reached=domain.reached,
            below=domain.below,
            unit=domain.total_unit,
            entries=per_language.get(name, ""),
            cls=_pascal(domain.items) + "Total",
            names=separator.join(f'"{k}"' for k, _ in entries),
            amounts=separator.join(str(v) for _, v in entries),
        )
    else:
        type_name = _pascal(domain.category)
        cases = domain.cases
        per_language = {
            "C++": "\n".join(
                f'    case {type_name}::{_pascal(label.split())}: return "{message}";' for label, message in cases
            ),
            "Java": "\n".join(f'      case "{label}" -> "{message}";' for label, message in cases),
            "Ruby": "\n".join(f"  when '{label}' then '{message}'" for label, message in cases),
            "Rust": "\n".join(f'        "{label}" => "{message}",' for label, message in cases),
            "Bash": "\n".join(f'    "{label}") echo "{message}" ;;' for label, message in cases),
            "Python": "\n".join(f'        case "{label}":\n            return "{message}"' for label, message in cases),
            "JavaScript": "\n".join(f'    case "{label}":\n      return "{message}";' for label, message in cases),
        }
        labels = [label for label, _ in cases]
        sample_labels = [*labels, "other"]
        samples = {
            "C++": ", ".join(f"{type_name}::{_pascal(label.split())}" for label in sample_labels),
            "Ruby": _quoted(sample_labels, "'"),
            "Bash": " ".join(f'"{label}"' for label in sample_labels),
        }
        values.update(
            var=_identifier(domain.category, camel),
            type=type_name,
            fallback=domain.fallback,
            cases=per_language[name],
            samples=samples.get(name, _quoted(sample_labels, '"')),
            enumerators=", ".join(_pascal(label.split()) for label in labels),
            fn=_identifier(("advice", "for", *domain.category), camel),
            cls=type_name + "Advice",
        )
    return _fill(language.templates[kind], values)


INTROS = (
    "Here is a @lang@ @form@ written for @audience@.",
    "Here is one way to do it in @lang@.",
    "A compact @lang@ @form@ for this task follows.",
)
SECOND_SENTENCES = (
    " Values are hard-coded so @audience@ can experiment with them.",
    " It is short enough for @audience@ to trace by hand.",
    "",
    "",
    "",
)
OUTROS = {
    "threshold": (
        "The if/else compares the @metric@ with @limit@ @unit@ and returns one of two messages.",
        "Values @side@ @limit@ @unit@ take the first branch; everything else gets the corrective message.",
    ),
    "total": (
        "The loop keeps a running total; one comparison afterwards checks it against @goal@ @unit@.",
        "Each entry is added inside @loop@, and only after the loop is the total compared with @goal@ @unit@.",
    ),
    "category": (
        "The @switch_noun@ maps each known @category@ to its advice, and the default branch covers the rest.",
        "Each known @category@ has its own branch in the @switch_noun@; unknown values fall to the default.",
    ),
}


def build_tiny_codes() -> list[dict[str, object]]:
    for domain in DOMAINS:
        _check_domain(domain)
    rng = random.Random(SEED)
    languages = [name for name, count in TINY_CODES_LANGUAGE_COUNTS.items() for _ in range(count)]
    rng.shuffle(languages)

    # Each (domain, kind) pair is used at most once per language, so prompts
    # cannot repeat within a language and the 48-row languages cover them all.
    pairs = [(domain, kind) for domain in DOMAINS for kind in KINDS]
    queues: dict[str, list[tuple[Domain, str]]] = {}
    for name, count in TINY_CODES_LANGUAGE_COUNTS.items():
        if count > len(pairs):
            raise SystemExit(f"{name} needs {count} rows but only {len(pairs)} domain/kind pairs exist")
        queues[name] = rng.sample(pairs, count)

    rows: list[dict[str, object]] = []
    for idx, name in enumerate(languages):
        language = LANGUAGES[name]
        domain, kind = queues[name].pop()
        verb = rng.choice(VERBS[kind])
        adjective = rng.choice(ADJECTIVES)
        scenario = rng.choice(SCENARIOS)
        audience = rng.choice(AUDIENCES)
        common = rng.choice(COMMON_SENSE)
        form = rng.choice(language.forms)
        task = {"threshold": domain.check_task, "total": domain.total_task, "category": domain.category_task}[kind]
        construct = {"threshold": "if/else statements", "total": language.loop, "category": language.switch}[kind]
        words = {
            "lang": name,
            "form": form,
            "verb3": THIRD_PERSON[verb],
            "task": task,
            "audience": audience.lower(),
            "common": common.lower(),
            "limit": domain.limit,
            "unit": domain.unit,
            "goal": domain.goal,
            "side": "at or below" if domain.at_most else "at or above",
            "loop": language.loop,
            "switch_noun": language.switch_noun,
            "category": " ".join(domain.category),
            "metric": domain.metric_label.lower(),
        }
        if kind == "total":
            words["unit"] = domain.total_unit
        prompt = (
            f"Write a {name} {form} that {THIRD_PERSON[verb]} {task}, using {construct}, for {audience.lower()}. "
            f"Context: {adjective.lower()} {domain.main_topic.lower()} ({domain.subtopic.lower()}) "
            f"{scenario.lower()}; keep {common.lower()} in mind and comment the branches."
        )
        code = _render_code(language, kind, domain, verb)
        if name == "Python":
            try:
                compile(code, "<fixture>", "exec")
            except SyntaxError as error:
                raise SystemExit(f"tiny-codes Python row {idx} does not compile: {error}") from error
        prose = _fill(rng.choice(INTROS) + rng.choice(SECOND_SENTENCES), words)
        outro = _fill(rng.choice(OUTROS[kind]), words)
        response = f"{prose}\n\n```{language.fence}\n{code}\n```\n\n{outro}"
        rows.append(
            {
                "prompt": prompt,
                "main_topic": domain.main_topic,
                "subtopic": domain.subtopic,
                "adjective": adjective,
                "action_verb": verb,
                "scenario": scenario,
                "target_audience": audience,
                "programming_language": name,
                "common_sense_topic": common,
                "idx": idx,
                "response": response,
            }
        )

    prompts = [row["prompt"] for row in rows]
    if len(set(prompts)) != len(prompts):
        raise SystemExit("duplicate tiny-codes prompts")
    return rows


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _validate(rows: list[dict[str, object]], keys: tuple[str, ...], may_be_empty: set[str]) -> None:
    for number, row in enumerate(rows):
        if tuple(row) != keys:
            raise SystemExit(f"row {number} has keys {tuple(row)}, expected {keys}")
        for key, value in row.items():
            if key == "idx":
                if not isinstance(value, int):
                    raise SystemExit(f"row {number}: idx must be an int")
            elif not isinstance(value, str) or (not value and key not in may_be_empty):
                raise SystemExit(f"row {number}: field {key!r} must be a non-empty string")


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    # newline="\n" keeps the bytes identical on every platform.
    path.write_text(text, encoding="utf-8", newline="\n")


def main() -> None:
    codealpaca = build_codealpaca()
    _validate(codealpaca, CODEALPACA_KEYS, {"input"})
    tiny_codes = build_tiny_codes()
    _validate(tiny_codes, TINY_CODES_KEYS, set())
    _write_jsonl(CODEALPACA_PATH, codealpaca)
    _write_jsonl(TINY_CODES_PATH, tiny_codes)

    with_input = sum(1 for row in codealpaca if row["input"])
    print(f"{CODEALPACA_PATH.name}: {len(codealpaca)} rows ({with_input} with non-empty input)")
    print(f"{TINY_CODES_PATH.name}: {len(tiny_codes)} rows")
    for name in TINY_CODES_LANGUAGE_COUNTS:
        count = sum(1 for row in tiny_codes if row["programming_language"] == name)
        print(f"  {name}: {count}")


if __name__ == "__main__":
    main()
