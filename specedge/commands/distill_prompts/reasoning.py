"""Arithmetic word problems, and answers from a given context."""

from __future__ import annotations

import random

# ------------------------------------------------------------------------------ maths

_NAMES = ("Anna", "Tom", "Maria", "Sam", "Lena", "Omar", "Priya", "Jack",
    "Edmund", "Rosalind", "Thomas", "Beatrice", "Hugh", "Margery", "Walter", "Agnes",
)


def maths(rng: random.Random) -> str:
    n = rng.choice(_NAMES)
    a, b, c = rng.randint(3, 60), rng.randint(2, 30), rng.randint(2, 12)
    kind = rng.randrange(15)
    if kind == 0:
        text = (f"A farmer has {a + c} sheep, buys {b} more and then sells {c}. "
                "How many sheep does he have now?")
    elif kind == 1:
        text = f"A train travels {b * 5} miles an hour. How far does it go in {c} hours?"
    elif kind == 2:
        text = f"Pencils cost {b} cents each. How much do {c} pencils cost?"
    elif kind == 3:
        text = (f"{c} friends share {a * c + b % c} apples equally. How many does each get, "
                "and how many are left over?")
    elif kind == 4:
        text = f"A garden is {a} metres long and {b} metres wide. What is its perimeter?"
    elif kind == 5:
        text = (f"{n} is {a} years old and {n}'s cousin is {b} years older. How old will the "
                f"cousin be in {c} years?")
    elif kind == 6:
        text = (f"A tank holds {b * c} litres of water and loses {b} litres an hour. After how "
                "many hours is it empty?")
    elif kind == 7:
        text = f"What is {rng.choice((10, 20, 25, 50))} percent of {a * 4}?"
    elif kind == 8:
        text = (f"A book has {a * c} pages. {n} reads {a} pages a day. How many days does it "
                "take to finish the book?")
    elif kind == 9:
        text = (f"A merchant buys {c} bolts of cloth at {b} shillings each and sells each for "
                f"{b + a % 9 + 1} shillings. How much does he gain?")
    elif kind == 10:
        text = (f"A knight covers {b} leagues on horseback each day. In how many days will he "
                f"cover {b * c} leagues?")
    elif kind == 11:
        text = (f"A castle has {c} towers and {b} archers in each tower. How many archers "
                "guard the castle?")
    elif kind == 12:
        text = (f"A ship carries {a * c} barrels and unloads {a} barrels an hour. How long "
                "does it take to empty it?")
    elif kind == 13:
        text = f"A loaf costs {c} pence. How many loaves can {n} buy with {b * c} pence?"
    else:
        text = (f"A room at an inn costs {b} pence a night for each guest. What do {c} nights "
                "cost for two travellers?")
    return text + (" Think step by step." if rng.random() < 0.6 else "")


# ----------------------------------------------------------------------- answers from a context

_THINGS = (("bridge", "stone"), ("library", "brick"), ("lighthouse", "granite"),
           ("town hall", "timber"), ("market hall", "iron and glass"), ("harbour wall", "concrete"))
_TOWNS = ("Eastwick", "Marlow Bay", "Highfield", "Port Aven", "Greyford", "Linden",
    "Ashby", "Fenwick", "Carrow", "Saltmarsh", "Westcote", "Brayford",
)
_EVENTS = ("a flood", "a fire", "an earthquake", "a great storm", "years of neglect",
    "a plague year", "a riot of apprentices", "a lightning strike", "a royal order",
)


_FIRST = ("Thomas", "John", "Edmund", "Richard", "William", "Henry", "Robert", "Francis")
_LAST = ("Fenwick", "Ashby", "Carrow", "Hale", "Marston", "Dekker", "Pryce", "Lovell")
_TITLES = ("The Winter Road", "The Merchant's Oath", "The Two Brothers", "A Mirror for Kings",
           "The Silent Bell", "The Shepherd's Year", "The Lost Crown", "Songs of the Marsh")
_CITIES = ("London", "Oxford", "Norwich", "York", "Bristol", "Antwerp")


def _people_context(rng: random.Random) -> tuple[str, list[str]]:
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    born = rng.randint(1520, 1640)
    died = born + rng.randint(25, 80)
    plays = rng.randint(2, 30)
    title = rng.choice(_TITLES)
    context = (f"The poet {name} was born in {rng.choice(_TOWNS)} in {born}. He wrote {plays} "
               f"plays, the best known of them {title}, and died in {rng.choice(_CITIES)} in "
               f"{died}.")
    return context, [f"Where was {name} born?", f"How many plays did {name} write?",
                     f"How old was {name} when he died?", "Which is his best known play?"]


def _theatre_context(rng: random.Random) -> tuple[str, list[str]]:
    name = f"The {rng.choice(('Rose', 'Swan', 'Fortune', 'Curtain', 'Hope', 'Falcon'))} Theatre"
    opened = rng.randint(1560, 1640)
    closed = opened + rng.randint(5, 60)
    seats = rng.randint(4, 30) * 100
    context = (f"{name} opened in {opened} near the river. It could hold {seats} people and "
               f"it closed in {closed} after {rng.choice(_EVENTS)}.")
    return context, [f"When did {name.lower()} open?", "How many people could it hold?",
                     "Why did it close?", "For how many years was it open?"]


def _book_context(rng: random.Random) -> tuple[str, list[str]]:
    title = rng.choice(_TITLES)
    printed = rng.randint(1500, 1700)
    copies = rng.randint(2, 20) * 50
    context = (f"The first edition of {title} was printed in {rng.choice(_CITIES)} in "
               f"{printed}, in {copies} copies. A second edition with {rng.randint(3, 40)} new "
               f"poems followed {rng.randint(2, 30)} years later.")
    return context, ["Where was the first edition printed?", "How many copies were printed?",
                     "When did the second edition appear?", "What did the second edition add?"]


def rag(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind:
        context, questions = (_people_context, _theatre_context, _book_context)[kind - 1](rng)
        return f"Context: {context}\nQuestion: {rng.choice(questions)}"
    thing, material = rng.choice(_THINGS)
    town, event = rng.choice(_TOWNS), rng.choice(_EVENTS)
    built = rng.randint(1600, 1950)
    repaired = built + rng.randint(10, 70)
    size = rng.randint(12, 240)
    context = (f"The {thing} of {town} was built in {built} from {material}. It is {size} metres "
               f"long and was repaired in {repaired} after {event} damaged it.")
    question = rng.choice((f"When was the {thing} built?", f"What is the {thing} made of?",
                           f"How long is the {thing}?", f"Why was the {thing} repaired?",
                           f"How many years after it was built was the {thing} repaired?"))
    return f"Context: {context}\nQuestion: {question}"
