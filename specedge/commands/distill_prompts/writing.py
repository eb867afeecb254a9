"""Writing and roleplay requests, and translations of sentences written here."""

from __future__ import annotations

import random

# ------------------------------------------------------------------------------ writing, roleplay

HEROES = ("A young fisherman", "An old queen", "A poor student", "A travelling doctor",
          "A retired soldier", "A shy painter", "A clever orphan", "A famous singer",
          "A village schoolteacher", "A ship's carpenter", "A widowed farmer",
          "A proud architect",
    "A young prince", "A banished duke", "A jealous king", "A proud general",
    "A merchant's daughter", "An ambitious courtier", "A shipwrecked sailor",
    "A queen without an heir", "A disguised princess", "A penniless knight",
)

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


def writing(rng: random.Random) -> str:
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
        text = (f"Write a short portrait of {rng.choice(HEROES).lower()}, with one strength "
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


def translation(rng: random.Random) -> str:
    if rng.random() < 0.7:
        language = rng.choice(list(_FOREIGN))
        text = _sentences(rng, _FOREIGN[language])
        return rng.choice((f'Translate into English: "{text}"',
                           f'What does this {language} mean in English? "{text}"',
                           f'Translate from {language}: "{text}"'))
    return f'Translate into {rng.choice(_LANGUAGES)}: "{_sentences(rng, _ENGLISH)}"'
