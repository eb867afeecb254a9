"""Summaries of passages, and questions with short answers."""

from __future__ import annotations

import random

from specedge.commands.distill_prompts.writing import HEROES

# ------------------------------------------------------------------------------ summarization

_GOALS = ("sets out to find a lost brother", "wants to win the city's great race",
          "dreams of building a house by the sea", "must deliver a letter across the mountains",
          "hopes to open a small theatre", "tries to save the family mill from ruin",
          "searches for a cure for a strange fever", "plans to sail around the world",
    "learns that his brother has seized the throne",
    "disguises herself as a page to serve a count",
    "is told by a fortune teller that he will rule the land",
    "swears to avenge a murdered friend", "falls in love with the daughter of an enemy",
    "tries to win back a kingdom lost in a war", "must choose between love and duty",
    "plots to marry the king's only daughter",
)
_OBSTACLES = ("On the way, a storm destroys the only bridge.",
              "A jealous rival spreads lies about the plan.",
              "The money runs out halfway through the work.",
              "A long illness keeps everyone at home for a winter.",
              "A powerful landlord claims the land for himself.",
              "An old friend turns out to be working against the plan.",
    "A letter goes astray and every plan is misread.",
    "A trusted adviser secretly works for the other side.",
    "A shipwreck separates the travellers on a strange island.",
    "A rumour of treason turns the court against the hero.",
    "A forced marriage is arranged for the next morning.",
    "A war breaks out between the two houses.",
)
_TURNS = ("A stranger offers help in exchange for a promise.",
          "A forgotten diary reveals a hidden path.",
          "The whole town gathers to lend a hand.",
          "A child notices the one detail everyone else missed.",
          "An unexpected letter brings news from far away.",
    "A servant in disguise overhears the whole plot.",
    "A ring given in secret proves who is telling the truth.",
    "A twin long thought dead arrives in the city.",
    "A sleeping potion makes a living woman seem dead.",
    "An old prophecy comes true in an unexpected way.",
)
_ENDINGS = ("In the end the goal is reached, though at a high price.",
            "The journey fails, but it brings the family back together.",
            "Years later, the story is told as a legend in the village.",
            "Everything ends well, and the rival becomes a friend.",
            "The promise must be kept, and it changes everything.",
    "The play ends with a double wedding and a pardon for all.",
    "Both lovers die, and their families are reconciled over the graves.",
    "The usurper is defeated and the rightful ruler is crowned.",
    "The hero dies alone, having lost everything he fought for.",
    "The truth comes out, the villain flees and the exiles return home.",
)
_SUMMARY_ASKS = ("Summarize in one sentence:", "Summarize in two sentences:",
                 "Give a one-line summary of this story:", "What is this story about? Be brief.",
                 "Summarize this plot in one sentence:", "Tell this story in a few words:")


def summarization(rng: random.Random) -> str:
    hero = rng.choice(HEROES)
    story = " ".join((f"{hero} {rng.choice(_GOALS)}.", rng.choice(_OBSTACLES),
                      rng.choice(_TURNS), rng.choice(_ENDINGS)))
    return f"{rng.choice(_SUMMARY_ASKS)} {story}"


# ------------------------------------------------------------------------------ question answering

_TERMS = ("a comet", "a glacier", "an orchestra", "a volcano", "photosynthesis", "a democracy",
          "inflation", "a metaphor", "an eclipse", "a haiku", "a vaccine", "an atom",
          "a library card", "a compass", "gravity", "a novel", "an island", "a recipe",
    "an epic poem", "a ballad", "a soliloquy", "a masque", "an apprentice", "a guild",
    "a moat", "a jester", "a quill pen", "a tragedy", "a chronicle", "a pilgrimage",
    "a printing press", "a blank verse line", "a court of law", "a feudal lord",
)
_WHYS = ("cats purr", "birds fly south in winter", "ships float", "stars twinkle",
         "onions make people cry", "we yawn", "bread go stale", "metal feel cold",
         "days get longer in summer", "people need sleep",
    "kings wear crowns", "castles have moats", "old plays have so many ghosts",
    "sailors feared scurvy", "knights carried shields with coats of arms",
    "theatres were closed during the plague", "poets wrote in rhyme",
    "people once wrote with quill pens",
)
_PAIRS = (("weather", "climate"), ("a lake", "a sea"), ("a novel", "a short story"),
          ("a virus", "a bacterium"), ("a town", "a city"), ("speed", "velocity"),
          ("a poem", "a song"), ("a map", "a globe"),
    ("a king", "an emperor"), ("a play", "a novel"), ("a knight", "a squire"),
    ("a comedy", "a romance"), ("a duke", "an earl"), ("a ballad", "an epic"),
    ("a castle", "a palace"), ("a merchant", "a banker"),
)
_HOWS = ("a rainbow appear", "a refrigerator keep food cold", "a plane stay in the air",
         "the heart pump blood", "a seed grow into a tree", "a lighthouse warn ships",
    "a sailing ship turn against the wind", "a blacksmith shape iron",
    "a printing press make a book", "a sundial tell the time", "a catapult throw a stone",
    "an actor learn a long part",
)
_COUNTS = ("How many legs does a spider have?", "How many days are there in a leap year?",
           "How many continents are there?", "How many sides does a hexagon have?",
           "How many minutes are there in a day?", "How many players are in a football team?",
    "How many acts does a classical play usually have?",
    "How many strings does a violin have?", "How many days are there in a fortnight?",
    "How many pence were there in an old English shilling?",
    "How many lines does a limerick have?",
)


_QA_ASKS = ("", " Answer in one sentence.", " Explain briefly.",
            " Explain it to a ten-year-old.", " Give an example.", " Answer in a few words.",
            " Be brief.", " Answer in two sentences.", " Use simple words.")


_FIGURES = ("Julius Caesar", "Christopher Columbus", "Leonardo da Vinci", "Galileo",
            "Joan of Arc", "King Arthur", "Marco Polo", "Cleopatra", "Charlemagne", "Homer",
            "Dante", "Queen Elizabeth the First")
_OLD_WORDS = ("thou", "hence", "anon", "wherefore", "forsooth", "alas", "prithee", "knave",
              "betwixt", "ere", "morrow", "hither")
_TRADES = ("a cooper", "a chandler", "a scrivener", "a town crier", "a fletcher",
           "a tanner", "a wheelwright", "a falconer")


def qa(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 5:
        return f"Who was {rng.choice(_FIGURES)}?" + rng.choice(_QA_ASKS)
    if kind == 6:
        return f'What does the old word "{rng.choice(_OLD_WORDS)}" mean?' + rng.choice(_QA_ASKS)
    if kind == 7:
        return f"What did {rng.choice(_TRADES)} do in an old town?" + rng.choice(_QA_ASKS)
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
