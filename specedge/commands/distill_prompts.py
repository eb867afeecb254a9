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
          "a limerick",
    "a sonnet", "a ballad", "a prologue for a play", "a soliloquy", "an epitaph",
    "a royal proclamation", "a love letter", "a lament",
)
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
    "a queen who must choose between two suitors", "a shipwrecked prince on a strange shore",
    "a jester who loses his voice on the eve of a feast", "a herald who must carry bad news",
    "two rival families at one wedding feast", "a knight returning to a ruined castle",
    "a poet who sells his last book for bread", "a company of actors caught in a storm",
    "a miser who hides his gold under the floor", "a ghost that walks the castle walls",
    "a merchant waiting for ships that are late", "a lord banished to live in the forest",
    "a page who carries a secret letter", "a crown that nobody dares to wear",
    "an old nurse who raised a princess", "a duel at dawn that never takes place",
)
_ROLES = ("a ship's cook", "a museum guide", "an old gardener", "a detective",
          "a weather forecaster", "a librarian", "a mountain guide", "a blacksmith",
          "a tour guide in Rome", "a knight coming home from war", "a space station engineer",
          "a zookeeper", "a pirate captain", "a village doctor", "a baker at dawn",
          "a train conductor",
    "a court jester", "a royal herald", "an innkeeper", "a playwright", "a travelling actor",
    "a castle guard", "a queen's lady-in-waiting", "a town crier", "a sea captain",
    "a monk who copies books", "a duke in exile", "a printer of books", "a king's taster",
    "a fencing master",
)
_ROLE_TASKS = (
    "Welcome a group of visitors and tell them the one rule they must follow.",
    "Explain your work to a curious child.",
    "Persuade a customer to try something new.",
    "Describe the worst day you ever had at work.",
    "Apologise to someone you have let down.",
    "Give a short speech at the opening of a new school.",
    "Tell a newcomer what you love about your town.",
    "Warn your friends about a danger only you have noticed.",
    "Announce a royal wedding to the crowd in the market square.",
    "Tell a traveller why the city gates are shut tonight.",
    "Advise a young prince who is afraid of becoming king.",
    "Ask the queen, politely, for a favour she may refuse.",
    "Explain to an angry crowd why the bread is so dear this winter.",
    "Introduce tonight's play to a noisy audience.",
)
_PLACES = ("a busy harbour", "a village fair", "a snowed-in mountain hut", "an empty theatre",
           "a railway station", "an old library", "a desert camp", "a flower market",
           "a hospital corridor", "a lighthouse", "a school playground", "a forest clearing",
    "a royal court", "a castle hall during a feast", "a crowded inn", "a theatre before the play",
    "a harbour where merchant ships unload", "a battlefield after the fighting",
    "a monastery garden", "a palace kitchen", "a ship's deck in a storm",
)
_TIMES = ("at midnight", "in early spring", "on a rainy afternoon", "during a festival",
          "at sunset", "on the first snowy morning", "in the middle of a heatwave")
_OBSERVERS = ("a child", "a painter", "a tired postman", "a cat", "a visitor from abroad",
              "a night watchman", "a photographer",
    "a young page", "a visiting ambassador", "an old soldier", "a wandering minstrel",
)
_PEOPLE = ("a new student", "a first-time traveller", "a nervous speaker", "a young cook",
           "a beginner gardener", "a new manager", "someone learning to swim",
           "a person moving to a big city", "a student writing an essay",
    "a young knight", "a new apprentice", "a young poet", "a sailor on his first voyage",
    "a prince learning to rule",
)
_OCCASIONS = ("before an exam", "on a long journey", "before a job interview",
              "in the first week", "on a tight budget", "when things go wrong",
              "who wants to make friends")
_AUDIENCES = ("a child", "a beginner", "a grandparent", "a student", "a visitor from the past",
    "a young prince", "a sailor", "a farmer's son",
)
_TOPICS = ("why the sky is blue", "how rainbows form", "why leaves fall in autumn",
           "how bees make honey", "why bread rises", "how a compass works",
           "why we have seasons", "how a bicycle stays upright", "what causes thunder",
           "how plants drink water", "why the sea is salty", "how a letter travels by post",
           "what a computer does when you press a key", "why ice floats",
    "why the tides rise and fall", "how a printing press works",
    "how sailors found their way before maps were good", "why the stars seem to turn at night",
    "how a castle was defended", "why candles were made of wax or tallow",
    "how a clock keeps time", "why the plague spread so fast in old cities",
)
_SPEAKERS = ("a coach to her team before the final", "a mayor opening a new bridge",
             "a best man at a wedding", "a student at graduation",
             "a ship's captain before a long voyage", "a farmer at the harvest festival",
    "a king to his army on the eve of battle", "a queen to her people after a war",
    "a duke welcoming guests to his daughter's wedding",
    "an actor thanking the audience on the last night of a play",
    "a ship's captain to a crew who want to turn back",
)
_FOLLOW_UPS = ("Now make it shorter.", "Rewrite it for a young child.",
               "Give it a happy ending.", "Now tell it from another point of view.",
               "Add a surprising twist.", "Turn it into a short poem.")


_SITUATIONS = ("have been locked in the same cellar", "find the same purse in the road",
               "must share one horse for a long journey", "both claim to have seen a ghost",
               "are waiting for a ship that is very late", "argue about who should be king")


def _writing(rng: random.Random) -> str:
    kind = rng.randrange(8)
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
    elif kind == 5:
        text = f"Compose a short speech for {rng.choice(_SPEAKERS)}."
    elif kind == 6:
        first, second = rng.sample(_ROLES, 2)
        text = f"Write a dialogue between {first} and {second} who {rng.choice(_SITUATIONS)}."
    else:
        text = (f"Write a short portrait of {rng.choice(_HEROES).lower()}, with one strength "
                "and one flaw.")
    if rng.random() < 0.25:
        text += " " + rng.choice(_FOLLOW_UPS)
    return text


# ------------------------------------------------------------------------------ translation

_FOREIGN = {
    "French": ("Petit à petit, l'oiseau fait son nid.", "Qui vivra verra.",
               "L'habit ne fait pas le moine.", "Après la pluie, le beau temps.",
               "Il pleut depuis ce matin.", "Je voudrais un café, s'il vous plaît.",
               "Nous partons en vacances demain.", "Le chat dort sur le canapé.",
               "Où se trouve la gare ?", "Mon frère travaille dans une banque.",
               "Il faut manger pour vivre.", "Les enfants jouent dans le jardin."),
    "German": ("Übung macht den Meister.", "Aller Anfang ist schwer.",
               "Morgenstund hat Gold im Mund.", "Wer rastet, der rostet.",
               "Wir gehen morgen ins Kino.", "Das Wetter ist heute sehr schön.",
               "Ich habe meinen Schlüssel verloren.", "Kannst du mir bitte helfen?",
               "Der Zug kommt um acht Uhr an.", "Meine Mutter kocht sehr gern."),
    "Spanish": ("Más vale tarde que nunca.", "Poco a poco se va lejos.",
                "En boca cerrada no entran moscas.",
                "¿Dónde está la estación de tren?", "Hoy hace mucho calor.",
                "Me gusta leer antes de dormir.", "Mañana vamos a la playa.",
                "La cena está lista.", "Mi hermana vive en Madrid."),
    "Italian": ("Chi dorme non piglia pesci.", "L'appetito vien mangiando.",
                "Tutto il mondo è paese.",
                "Oggi il cielo è sereno.", "Vorrei prenotare un tavolo per due.",
                "Il treno è in ritardo.", "Mi piace molto la musica.",
                "Dove posso comprare un biglietto?", "Siamo arrivati ieri sera."),
    "Latin": ("Alea iacta est.", "Cogito, ergo sum.", "Memento mori.", "Nosce te ipsum.",
              "Ars longa, vita brevis.", "Audentes fortuna iuvat.", "Dum spiro, spero.",
              "In vino veritas.", "Sic transit gloria mundi.", "Fiat lux.",
              "Festina lente.", "Veni, vidi, vici.", "Errare humanum est.", "Tempus fugit.",
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
           "A proud architect",
    "A young prince", "A banished duke", "A jealous king", "A proud general",
    "A merchant's daughter", "An ambitious courtier", "A shipwrecked sailor",
    "A queen without an heir", "A disguised princess", "A penniless knight",
)
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


def _summarization(rng: random.Random) -> str:
    hero = rng.choice(_HEROES)
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


def _qa(rng: random.Random) -> str:
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


# ------------------------------------------------------------------------------ maths

_NAMES = ("Anna", "Tom", "Maria", "Sam", "Lena", "Omar", "Priya", "Jack",
    "Edmund", "Rosalind", "Thomas", "Beatrice", "Hugh", "Margery", "Walter", "Agnes",
)


def _maths(rng: random.Random) -> str:
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


def _rag(rng: random.Random) -> str:
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
