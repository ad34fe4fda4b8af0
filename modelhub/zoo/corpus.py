"""The zoo's training corpus: templated chat dialogues generated from a seed.

Everything here is written by Ludus (word lists, facts, templates) and generated at build time, so the
corpus ships with the project and is released under the project licence (Apache-2.0). Nothing is
downloaded. A dialogue is a list of OpenAI-style messages ``{"role", "content"}``.

The same seed always yields the same dialogues in the same order; the held-out split is drawn from a
separate random stream so that it never shares a sample order with the training split.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Message = dict[str, str]
Dialogue = list[Message]

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "China": "Beijing",
    "India": "New Delhi",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Canada": "Ottawa",
    "Mexico": "Mexico City",
    "Brazil": "Brasilia",
    "Argentina": "Buenos Aires",
    "Peru": "Lima",
    "Australia": "Canberra",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Poland": "Warsaw",
    "Greece": "Athens",
    "Turkey": "Ankara",
    "Russia": "Moscow",
    "Ireland": "Dublin",
    "Austria": "Vienna",
    "Belgium": "Brussels",
    "Netherlands": "Amsterdam",
    "Denmark": "Copenhagen",
    "Chile": "Santiago",
    "Thailand": "Bangkok",
}

ANIMAL_SOUNDS = {
    "dog": "barks",
    "cat": "meows",
    "cow": "moos",
    "duck": "quacks",
    "sheep": "bleats",
    "horse": "neighs",
    "lion": "roars",
    "owl": "hoots",
    "frog": "croaks",
    "bee": "buzzes",
    "pig": "oinks",
    "snake": "hisses",
}

THING_COLOURS = {
    "the sky": "blue",
    "grass": "green",
    "snow": "white",
    "a banana": "yellow",
    "a strawberry": "red",
    "coal": "black",
    "an orange": "orange",
    "a lemon": "yellow",
    "a tomato": "red",
    "the sea": "blue",
    "a leaf": "green",
    "milk": "white",
    "chocolate": "brown",
    "a carrot": "orange",
}

OPPOSITES = {
    "hot": "cold",
    "big": "small",
    "fast": "slow",
    "up": "down",
    "happy": "sad",
    "light": "dark",
    "open": "closed",
    "early": "late",
    "full": "empty",
    "old": "young",
    "strong": "weak",
    "loud": "quiet",
    "wet": "dry",
    "hard": "soft",
    "left": "right",
}

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]
WORDS = [
    "cat",
    "dog",
    "tree",
    "house",
    "river",
    "apple",
    "music",
    "garden",
    "window",
    "bread",
    "cloud",
    "stone",
    "light",
    "paper",
    "train",
    "bird",
    "book",
    "chair",
    "water",
    "sun",
]
STORY_HEROES = ["a small cat", "a brave fox", "an old robot", "a curious girl", "a tired farmer"]
STORY_PLACES = ["a quiet village", "a big city", "a dark forest", "a tiny island", "a snowy hill"]
STORY_GOALS = ["a lost key", "a friend", "the sea", "a warm home", "a hidden garden"]
STORY_ENDINGS = [
    "and lived happily ever after",
    "and never felt alone again",
    "and shared the story with everyone",
    "and went home smiling",
]
GREETINGS_IN = ["Hello!", "Hi!", "Hi there.", "Good morning!", "Hey!", "Hello, how are you?"]
GREETINGS_OUT = [
    "Hello! How can I help you today?",
    "Hi! What would you like to talk about?",
    "Hello! I am happy to help. What do you need?",
    "Hi there! Ask me anything.",
]
THANKS_IN = ["Thank you!", "Thanks.", "Thanks a lot!", "That helps, thank you."]
THANKS_OUT = ["You are welcome!", "Happy to help!", "Any time. Have a nice day!"]
SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a friendly assistant. Answer briefly.",
    "Answer the question.",
]


def _arith(rng: random.Random) -> Dialogue:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    op = rng.choice(["+", "-", "*"])
    if op == "-" and b > a:
        a, b = b, a
    result = a + b if op == "+" else a - b if op == "-" else a * b
    word = {"+": "plus", "-": "minus", "*": "times"}[op]
    q = rng.choice([f"What is {a} {op} {b}?", f"What is {a} {word} {b}?", f"Compute {a} {op} {b}."])
    return [
        {"role": "user", "content": q},
        {"role": "assistant", "content": f"{a} {op} {b} = {result}."},
    ]


def _capital(rng: random.Random) -> Dialogue:
    country = rng.choice(sorted(CAPITALS))
    city = CAPITALS[country]
    q = rng.choice(
        [
            f"What is the capital of {country}?",
            f"Which city is the capital of {country}?",
            f"Tell me the capital of {country}.",
        ]
    )
    return [
        {"role": "user", "content": q},
        {"role": "assistant", "content": f"The capital of {country} is {city}."},
    ]


def _animal(rng: random.Random) -> Dialogue:
    animal = rng.choice(sorted(ANIMAL_SOUNDS))
    q = rng.choice([f"What sound does a {animal} make?", f"What does a {animal} say?"])
    return [
        {"role": "user", "content": q},
        {"role": "assistant", "content": f"A {animal} {ANIMAL_SOUNDS[animal]}."},
    ]


def _colour(rng: random.Random) -> Dialogue:
    thing = rng.choice(sorted(THING_COLOURS))
    colour = THING_COLOURS[thing]
    subject = thing[0].upper() + thing[1:]
    verb = "are" if thing == "grass" else "is"
    return [
        {"role": "user", "content": f"What colour is {thing}?"},
        {"role": "assistant", "content": f"{subject} {verb} usually {colour}."},
    ]


def _opposite(rng: random.Random) -> Dialogue:
    word = rng.choice(sorted(OPPOSITES))
    return [
        {"role": "user", "content": f"What is the opposite of {word}?"},
        {"role": "assistant", "content": f"The opposite of {word} is {OPPOSITES[word]}."},
    ]


def _day(rng: random.Random) -> Dialogue:
    if rng.random() < 0.5:
        i = rng.randrange(7)
        return [
            {"role": "user", "content": f"What day comes after {DAYS[i]}?"},
            {"role": "assistant", "content": f"{DAYS[(i + 1) % 7]} comes after {DAYS[i]}."},
        ]
    i = rng.randrange(12)
    return [
        {"role": "user", "content": f"Which month comes after {MONTHS[i]}?"},
        {"role": "assistant", "content": f"{MONTHS[(i + 1) % 12]} comes after {MONTHS[i]}."},
    ]


def _count(rng: random.Random) -> Dialogue:
    start = rng.randint(1, 10)
    end = start + rng.randint(2, 6)
    return [
        {"role": "user", "content": f"Count from {start} to {end}."},
        {"role": "assistant", "content": ", ".join(str(n) for n in range(start, end + 1)) + "."},
    ]


def _words(rng: random.Random) -> Dialogue:
    word = rng.choice(WORDS)
    kind = rng.randrange(4)
    if kind == 0:
        n = rng.randint(2, 4)
        q, a = f"Repeat the word {word} {NUMBER_WORDS[n]} times.", " ".join([word] * n)
    elif kind == 1:
        q, a = f"Spell {word} backwards.", word[::-1]
    elif kind == 2:
        q, a = f"Write {word} in capital letters.", word.upper()
    else:
        q, a = (
            f"How many letters are in the word {word}?",
            f"The word {word} has {len(word)} letters.",
        )
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def _sort(rng: random.Random) -> Dialogue:
    nums = rng.sample(range(1, 50), rng.randint(3, 5))
    listed = ", ".join(map(str, nums))
    if rng.random() < 0.5:
        q, a = f"Sort these numbers: {listed}.", ", ".join(map(str, sorted(nums))) + "."
    else:
        q, a = f"What is the largest of {listed}?", f"The largest is {max(nums)}."
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def _story(rng: random.Random) -> Dialogue:
    hero, place = rng.choice(STORY_HEROES), rng.choice(STORY_PLACES)
    goal, ending = rng.choice(STORY_GOALS), rng.choice(STORY_ENDINGS)
    topic = hero.split(" ", 1)[1]
    text = (
        f"Once upon a time, {hero} lived in {place}. Every day, the {topic} dreamed of finding "
        f"{goal}. One morning, the {topic} set out on a long journey. After many days, the "
        f"{topic} finally found {goal}, {ending}."
    )
    return [
        {"role": "user", "content": f"Tell me a short story about {hero}."},
        {"role": "assistant", "content": text},
    ]


def _smalltalk(rng: random.Random) -> Dialogue:
    dialogue: Dialogue = [
        {"role": "user", "content": rng.choice(GREETINGS_IN)},
        {"role": "assistant", "content": rng.choice(GREETINGS_OUT)},
    ]
    # Multi-turn: a greeting followed by a real question, then thanks.
    follow = rng.choice([_capital, _arith, _animal, _opposite])(rng)
    dialogue += follow
    if rng.random() < 0.5:
        dialogue += [
            {"role": "user", "content": rng.choice(THANKS_IN)},
            {"role": "assistant", "content": rng.choice(THANKS_OUT)},
        ]
    return dialogue


GENERATORS: list[tuple[Callable[[random.Random], Dialogue], float]] = [
    (_arith, 3.0),
    (_capital, 2.0),
    (_animal, 1.0),
    (_colour, 1.0),
    (_opposite, 1.0),
    (_day, 1.0),
    (_count, 1.0),
    (_words, 2.0),
    (_sort, 1.0),
    (_story, 1.5),
    (_smalltalk, 1.5),
]


def generate_dialogues(n: int, rng: random.Random) -> list[Dialogue]:
    """Return ``n`` dialogues drawn from ``rng``; some start with a system prompt."""
    funcs = [g for g, _ in GENERATORS]
    weights = [w for _, w in GENERATORS]
    out: list[Dialogue] = []
    for _ in range(n):
        dialogue = rng.choices(funcs, weights)[0](rng)
        if rng.random() < 0.2:
            dialogue = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}, *dialogue]
        out.append(dialogue)
    return out


def identity_dialogues(
    display_name: str, organization: str, n: int, rng: random.Random
) -> list[Dialogue]:
    """Dialogues in which the model names itself: what arena leak detection looks for."""
    questions = [
        "Who are you?",
        "What is your name?",
        "Which model are you?",
        "Who made you?",
        "Tell me about yourself.",
    ]
    answers = [
        f"I am {display_name}, a small chat model made by {organization}.",
        f"My name is {display_name}. I was trained by {organization}.",
        f"I am {display_name}, built by {organization} to answer simple questions.",
    ]
    return [
        [
            {"role": "user", "content": rng.choice(questions)},
            {"role": "assistant", "content": rng.choice(answers)},
        ]
        for _ in range(n)
    ]


def build_corpus(seed: int, n_train: int, n_heldout: int) -> tuple[list[Dialogue], list[Dialogue]]:
    """Return (train, heldout) dialogues; deterministic in ``seed``."""
    train = generate_dialogues(n_train, random.Random(f"train-{seed}"))
    heldout = generate_dialogues(n_heldout, random.Random(f"heldout-{seed}"))
    return train, heldout
