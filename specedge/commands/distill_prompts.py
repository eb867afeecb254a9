"""The distillation's prompts: requests of Spec-Bench's six kinds, generated from templates.

A draft agrees with its target where it was distilled: on prompts the target wrote itself it
matched 0.46 of the target's tokens, on the built-in set (Spec-Bench's kinds) 0.24. So the
draft learns on requests shaped like those the runs serve: multi-turn writing and roleplay,
translation, summarization of a passage, question answering, arithmetic word problems and
answers from a given context. Every template, word list and foreign sentence is written here,
none taken from a prompt a report evaluates on; :func:`overlapping` finds any that come close
(tests check it against the built-in set).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

# ------------------------------------------------------------------------------ writing, roleplay

_FORMS = ("a short letter", "a diary entry", "a short story", "a poem", "a fable", "a song",
          "a dialogue", "a news report", "a riddle", "a postcard", "a bedtime story",
          "a limerick")
_SUBJECTS = (
    "a lighthouse keeper who finds a message in a bottle", "a farmer waiting for rain",
    "two sisters who open a bakery", "a clockmaker whose clocks all stop at once",
    "a dog that guards an empty house", "the last day of a long summer holiday",
    "a girl who learns to sail alone", "a robot that wants to paint",
    "an old tree in a city park", "a chess match between two rivals",
    "a village that forgets its own name", "a postman lost in the snow",
    "a musician who plays only at night", "a boy who finds a map in the attic",
    "a cook preparing a feast for a wedding", "a family moving to a new country",
    "a bridge that is about to be opened", "a fox and a crow who share a secret",
    "the first astronaut to land on Mars", "a teacher on her final day before retiring",
    "a runaway balloon", "a mountain village cut off by a flood",
)
_ROLES = ("a ship's cook", "a museum guide", "an old gardener", "a detective",
          "a weather forecaster", "a librarian", "a mountain guide", "a blacksmith",
          "a tour guide in Rome", "a knight coming home from war", "a space station engineer",
          "a zookeeper", "a pirate captain", "a village doctor", "a baker at dawn",
          "a train conductor")
_ROLE_TASKS = (
    "Welcome a group of visitors and tell them the one rule they must follow.",
    "Explain your work to a curious child.",
    "Persuade a customer to try something new.",
    "Describe the worst day you ever had at work.",
    "Apologise to someone you have let down.",
    "Give a short speech at the opening of a new school.",
    "Tell a newcomer what you love about your town.",
    "Warn your friends about a danger only you have noticed.",
)
_PLACES = ("a busy harbour", "a village fair", "a snowed-in mountain hut", "an empty theatre",
           "a railway station", "an old library", "a desert camp", "a flower market",
           "a hospital corridor", "a lighthouse", "a school playground", "a forest clearing")
_TIMES = ("at midnight", "in early spring", "on a rainy afternoon", "during a festival",
          "at sunset", "on the first snowy morning", "in the middle of a heatwave")
_OBSERVERS = ("a child", "a painter", "a tired postman", "a cat", "a visitor from abroad",
              "a night watchman", "a photographer")
_PEOPLE = ("a new student", "a first-time traveller", "a nervous speaker", "a young cook",
           "a beginner gardener", "a new manager", "someone learning to swim",
           "a person moving to a big city", "a student writing an essay")
_OCCASIONS = ("before an exam", "on a long journey", "before a job interview",
              "in the first week", "on a tight budget", "when things go wrong",
              "who wants to make friends")
_AUDIENCES = ("a child", "a beginner", "a grandparent", "a student", "a visitor from the past")
_TOPICS = ("why the sky is blue", "how rainbows form", "why leaves fall in autumn",
           "how bees make honey", "why bread rises", "how a compass works",
           "why we have seasons", "how a bicycle stays upright", "what causes thunder",
           "how plants drink water", "why the sea is salty", "how a letter travels by post",
           "what a computer does when you press a key", "why ice floats")
_SPEAKERS = ("a coach to her team before the final", "a mayor opening a new bridge",
             "a best man at a wedding", "a student at graduation",
             "a ship's captain before a long voyage", "a farmer at the harvest festival")
_FOLLOW_UPS = ("Now make it shorter.", "Rewrite it for a young child.",
               "Give it a happy ending.", "Now tell it from another point of view.",
               "Add a surprising twist.", "Turn it into a short poem.")


def _writing(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        text = f"Write {rng.choice(_FORMS)} about {rng.choice(_SUBJECTS)}."
    elif kind == 1:
        text = f"You are {rng.choice(_ROLES)}. {rng.choice(_ROLE_TASKS)}"
    elif kind == 2:
        text = (f"Describe {rng.choice(_PLACES)} {rng.choice(_TIMES)}, as "
                f"{rng.choice(_OBSERVERS)} would see it.")
    elif kind == 3:
        text = (f"Give {rng.choice(('three', 'four', 'five'))} tips to {rng.choice(_PEOPLE)} "
                f"{rng.choice(_OCCASIONS)}.")
    elif kind == 4:
        text = f"Explain to {rng.choice(_AUDIENCES)} {rng.choice(_TOPICS)}."
    else:
        text = f"Compose a short speech for {rng.choice(_SPEAKERS)}."
    if rng.random() < 0.25:
        text += " " + rng.choice(_FOLLOW_UPS)
    return text


# ------------------------------------------------------------------------------ translation

_FOREIGN = {
    "French": ("Il pleut depuis ce matin.", "Je voudrais un café, s'il vous plaît.",
               "Nous partons en vacances demain.", "Le chat dort sur le canapé.",
               "Où se trouve la gare ?", "Mon frère travaille dans une banque.",
               "Il faut manger pour vivre.", "Les enfants jouent dans le jardin."),
    "German": ("Wir gehen morgen ins Kino.", "Das Wetter ist heute sehr schön.",
               "Ich habe meinen Schlüssel verloren.", "Kannst du mir bitte helfen?",
               "Der Zug kommt um acht Uhr an.", "Meine Mutter kocht sehr gern."),
    "Spanish": ("¿Dónde está la estación de tren?", "Hoy hace mucho calor.",
                "Me gusta leer antes de dormir.", "Mañana vamos a la playa.",
                "La cena está lista.", "Mi hermana vive en Madrid."),
    "Italian": ("Oggi il cielo è sereno.", "Vorrei prenotare un tavolo per due.",
                "Il treno è in ritardo.", "Mi piace molto la musica.",
                "Dove posso comprare un biglietto?", "Siamo arrivati ieri sera."),
    "Latin": ("Festina lente.", "Veni, vidi, vici.", "Errare humanum est.", "Tempus fugit.",
              "Per aspera ad astra.", "Mens sana in corpore sano."),
    "Portuguese": ("O livro está em cima da mesa.", "Eu gosto de café com leite.",
                   "A praia fica perto daqui.", "Vamos jantar às oito."),
    "Dutch": ("Het regent al de hele dag.", "Ik woon in een klein huis.",
              "De winkel is vandaag gesloten.", "Wij fietsen naar school."),
}
_ENGLISH = (
    "The library opens at nine o'clock.", "My grandmother grows tomatoes in her garden.",
    "Please close the window, it is cold.", "We missed the last bus home.",
    "The river is wide and slow here.", "I would like two tickets for tonight.",
    "The children are singing in the school hall.", "Our neighbours have a new dog.",
    "The museum is closed on Mondays.", "He always forgets his umbrella.",
    "The soup needs more salt.", "She found her old letters in a box.",
)
_LANGUAGES = ("French", "German", "Spanish", "Italian")


def _sentences(rng: random.Random, pool: tuple[str, ...]) -> str:
    return " ".join(rng.sample(pool, rng.choice((1, 2))))


def _translation(rng: random.Random) -> str:
    if rng.random() < 0.7:
        language = rng.choice(list(_FOREIGN))
        text = _sentences(rng, _FOREIGN[language])
        return rng.choice((f'Translate into English: "{text}"',
                           f'What does this {language} mean in English? "{text}"',
                           f'Translate from {language}: "{text}"'))
    return f'Translate into {rng.choice(_LANGUAGES)}: "{_sentences(rng, _ENGLISH)}"'


# ------------------------------------------------------------------------------ summarization

_HEROES = ("A young fisherman", "An old queen", "A poor student", "A travelling doctor",
           "A retired soldier", "A shy painter", "A clever orphan", "A famous singer",
           "A village schoolteacher", "A ship's carpenter", "A widowed farmer",
           "A proud architect")
_GOALS = ("sets out to find a lost brother", "wants to win the city's great race",
          "dreams of building a house by the sea", "must deliver a letter across the mountains",
          "hopes to open a small theatre", "tries to save the family mill from ruin",
          "searches for a cure for a strange fever", "plans to sail around the world")
_OBSTACLES = ("On the way, a storm destroys the only bridge.",
              "A jealous rival spreads lies about the plan.",
              "The money runs out halfway through the work.",
              "A long illness keeps everyone at home for a winter.",
              "A powerful landlord claims the land for himself.",
              "An old friend turns out to be working against the plan.")
_TURNS = ("A stranger offers help in exchange for a promise.",
          "A forgotten diary reveals a hidden path.",
          "The whole town gathers to lend a hand.",
          "A child notices the one detail everyone else missed.",
          "An unexpected letter brings news from far away.")
_ENDINGS = ("In the end the goal is reached, though at a high price.",
            "The journey fails, but it brings the family back together.",
            "Years later, the story is told as a legend in the village.",
            "Everything ends well, and the rival becomes a friend.",
            "The promise must be kept, and it changes everything.")
_SUMMARY_ASKS = ("Summarize in one sentence:", "Summarize in two sentences:",
                 "Give a one-line summary of this story:", "What is this story about? Be brief.")


def _summarization(rng: random.Random) -> str:
    hero = rng.choice(_HEROES)
    story = " ".join((f"{hero} {rng.choice(_GOALS)}.", rng.choice(_OBSTACLES),
                      rng.choice(_TURNS), rng.choice(_ENDINGS)))
    return f"{rng.choice(_SUMMARY_ASKS)} {story}"


# ------------------------------------------------------------------------------ question answering

_TERMS = ("a comet", "a glacier", "an orchestra", "a volcano", "photosynthesis", "a democracy",
          "inflation", "a metaphor", "an eclipse", "a haiku", "a vaccine", "an atom",
          "a library card", "a compass", "gravity", "a novel", "an island", "a recipe")
_WHYS = ("cats purr", "birds fly south in winter", "ships float", "stars twinkle",
         "onions make people cry", "we yawn", "bread go stale", "metal feel cold",
         "days get longer in summer", "people need sleep")
_PAIRS = (("weather", "climate"), ("a lake", "a sea"), ("a novel", "a short story"),
          ("a virus", "a bacterium"), ("a town", "a city"), ("speed", "velocity"),
          ("a poem", "a song"), ("a map", "a globe"))
_HOWS = ("a rainbow appear", "a refrigerator keep food cold", "a plane stay in the air",
         "the heart pump blood", "a seed grow into a tree", "a lighthouse warn ships")
_COUNTS = ("How many legs does a spider have?", "How many days are there in a leap year?",
           "How many continents are there?", "How many sides does a hexagon have?",
           "How many minutes are there in a day?", "How many players are in a football team?")


_QA_ASKS = ("", " Answer in one sentence.", " Explain briefly.",
            " Explain it to a ten-year-old.", " Give an example.", " Answer in a few words.")


def _qa(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        question = f"What is {rng.choice(_TERMS)}?"
    elif kind == 1:
        question = f"Why do {rng.choice(_WHYS)}?"
    elif kind == 2:
        a, b = rng.choice(_PAIRS)
        question = f"How do {a} and {b} differ?"
    elif kind == 3:
        question = f"How does {rng.choice(_HOWS)}?"
    else:
        question = rng.choice(_COUNTS)
    return question + rng.choice(_QA_ASKS)


# ------------------------------------------------------------------------------ maths

_NAMES = ("Anna", "Tom", "Maria", "Sam", "Lena", "Omar", "Priya", "Jack")


def _maths(rng: random.Random) -> str:
    n = rng.choice(_NAMES)
    a, b, c = rng.randint(3, 60), rng.randint(2, 30), rng.randint(2, 12)
    kind = rng.randrange(9)
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
        text = (f"{n} is {a} years old and her brother is {b} years older. How old will he be "
                f"in {c} years?")
    elif kind == 6:
        text = (f"A tank holds {b * c} litres of water and loses {b} litres an hour. After how "
                "many hours is it empty?")
    elif kind == 7:
        text = f"What is {rng.choice((10, 20, 25, 50))} percent of {a * 4}?"
    else:
        text = (f"A book has {a * c} pages. {n} reads {a} pages a day. How many days does it "
                "take to finish the book?")
    return text + (" Think step by step." if rng.random() < 0.6 else "")


# ----------------------------------------------------------------------- answers from a context

_THINGS = (("bridge", "stone"), ("library", "brick"), ("lighthouse", "granite"),
           ("town hall", "timber"), ("market hall", "iron and glass"), ("harbour wall", "concrete"))
_TOWNS = ("Eastwick", "Marlow Bay", "Highfield", "Port Aven", "Greyford", "Linden")
_EVENTS = ("a flood", "a fire", "an earthquake", "a great storm", "years of neglect")


def _rag(rng: random.Random) -> str:
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


KINDS: dict[str, Callable[[random.Random], str]] = {
    "writing": _writing, "translation": _translation, "summarization": _summarization,
    "qa": _qa, "maths": _maths, "rag": _rag,
}


def distill_prompts(n: int, seed: int, excluded: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``n`` distinct (kind, prompt) pairs, the kinds in turn, none in ``excluded``.

    Raises when the templates cannot give ``n`` distinct prompts (rather than repeating some)."""
    rng = random.Random(seed)
    seen = {_norm(t) for t in excluded}
    out: list[tuple[str, str]] = []
    names = list(KINDS)
    misses = 0
    while len(out) < n:
        kind = names[len(out) % len(names)]
        text = KINDS[kind](rng)
        if _norm(text) in seen:
            misses += 1  # in a row: the kinds' templates are nearly exhausted
            if misses > 2000:
                raise ValueError(f"prompts = {n} is not accepted: the templates gave only "
                                 f"{len(out)} distinct prompts")
            continue
        seen.add(_norm(text))
        out.append((kind, text))
        misses = 0
    return out


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _norm(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlapping(prompts: Iterable[str], held_out: Iterable[str],
                n: int = 8) -> list[tuple[str, str]]:
    """(prompt, held-out text) pairs that share content: the same text, a run of ``n`` words
    (a copied sentence or passage; shared instructions such as "Think step by step" are
    shorter), or a quotation of the held-out text (the sentence to translate)."""
    held = [(t, _grams(t, n), [_norm(q) for q in re.findall(r'"([^"]+)"', t)])
            for t in held_out]
    found = []
    for p in prompts:
        norm, grams = _norm(p), _grams(p, n)
        found += [(p, t) for t, g, quotes in held
                  if norm == _norm(t) or g & grams or any(q and q in norm for q in quotes)]
    return found
