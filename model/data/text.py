"""English sentences with broad phonetic coverage, stable train/val/test splits, phone coverage.

`sentences(seed, n)` fills sentence templates from inline word lists. The words were chosen so
that every ARPAbet phone is common enough, including the rare ones: ZH (measure, vision, usual,
beige), OY (boy, coin, voice), UH (book, could, put), AW (house, now), CH, JH, TH, DH, NG.
Templates mix statements, questions, exclamations and commas, so the speech has pauses and
emphasis, and sentences are 3 to 20 words long.

`split_of(key)` assigns any string (a sentence, a voice name) to train/val/test from its SHA-1,
so the assignment is the same on every machine and Python version.
"""

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable

from .speech import ARPABET

MIN_WORDS = 3
MAX_WORDS = 20
SPLIT_RATIOS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
RARE_SHARE = 0.002  # a phone under this share of all phones is flagged by coverage_table

NAMES = (
    "Joyce", "George", "Judy", "Charlie", "Ruth", "Matthew", "Roger", "Sophie", "Howard",
    "Jasmine", "Dorothy", "Arthur", "Claire", "Hugo", "Wendy", "Vivian", "Nigel", "Zoe",
    "Bridget", "Timothy", "Lloyd", "Julia", "Martin", "Heather", "Ingrid", "Boyd",
)
NOUNS = (
    "boy", "coin", "voice", "toy", "book", "cook", "house", "mouth", "cloud", "flower", "chair",
    "church", "teacher", "kitchen", "judge", "bridge", "village", "jacket", "orange", "giant",
    "garage", "treasure", "television", "decision", "measure", "vision", "thing", "song", "king",
    "ring", "morning", "evening", "earth", "month", "bath", "path", "mother", "father", "brother",
    "weather", "feather", "leather", "window", "garden", "river", "mountain", "island", "city",
    "letter", "paper", "picture", "music", "table", "bottle", "bucket", "wagon", "engine",
    "ship", "fish", "shoe", "sugar", "woman", "wolf", "foot", "wood", "hook", "bush", "pool",
    "moon", "spoon", "boot", "goose", "juice", "cheese", "sheep", "queen", "key", "tree", "leaf",
    "beach", "cake", "game", "train", "plane", "snake", "nail", "rain", "bird", "girl", "nurse",
    "shirt", "word", "heart", "car", "star", "farm", "dog", "clock", "box", "shop", "doctor",
    "horse", "door", "ball", "wall", "storm", "cup", "bus", "sun", "duck", "button", "lamp",
    "cat", "hat", "map", "apple", "hand", "bag", "pen", "bed", "egg", "desk", "nest", "kettle",
    "boat", "road", "phone", "stone", "rope", "goat", "bike", "kite", "light", "night", "tiger",
    "lion", "eye", "oil", "point", "noise", "choice", "joy", "pillow", "yellow", "yard", "yacht",
    "whale", "wheel", "hill", "hole", "hut", "thumb", "zebra", "zoo", "puzzle", "lizard",
    "answer", "question", "problem", "reason", "message", "friend", "neighbour", "stranger",
)
ADJECTIVES = (
    "big", "small", "old", "young", "long", "strong", "thin", "thick", "smooth", "rough",
    "cheap", "huge", "beige", "brown", "round", "loud", "quiet", "good", "full", "wooden",
    "usual", "casual", "royal", "noisy", "joyful", "cheerful", "gentle", "jolly", "jagged",
    "shiny", "sharp", "bright", "dark", "warm", "cold", "wet", "dry", "happy", "sad", "funny",
    "heavy", "empty", "purple", "orange", "golden", "silver", "red", "green", "blue", "white",
    "black", "fresh", "strange", "pleasant", "awful", "easy", "busy", "lazy", "clever", "proud",
)
VERBS_PAST = (
    "found", "bought", "brought", "caught", "taught", "thought", "pushed", "pulled", "cooked",
    "looked at", "took", "shook", "joined", "enjoyed", "chose", "changed", "judged", "measured",
    "treasured", "watched", "touched", "reached", "washed", "fixed", "moved", "loved", "saw",
    "heard", "held", "sold", "told", "showed", "threw", "drew", "knew", "grew", "lost", "kept",
    "left", "fed", "met", "built", "painted", "carried", "hurried past", "borrowed", "noticed",
    "mentioned", "avoided", "counted", "shouted at", "pointed at", "destroyed", "annoyed",
)
VERBS_BASE = (
    "find", "buy", "bring", "catch", "teach", "think about", "push", "pull", "cook", "look at",
    "take", "shake", "join", "enjoy", "choose", "change", "judge", "measure", "watch", "touch",
    "reach", "wash", "fix", "move", "love", "see", "hear", "hold", "sell", "tell", "show",
    "throw", "draw", "keep", "leave", "feed", "meet", "build", "paint", "carry", "borrow",
    "notice", "mention", "avoid", "count", "sing", "bring back", "put away", "ignore", "visit",
)
VERBS_ING = (
    "singing", "ringing", "jumping", "running", "laughing", "shouting", "cooking", "reading",
    "thinking", "breathing", "pushing", "pulling", "watching", "enjoying", "talking", "walking",
    "swimming", "sleeping", "working", "playing", "writing", "waiting", "smiling", "bathing",
)
ADVERBS = (
    "quickly", "slowly", "quietly", "loudly", "gently", "badly", "happily", "usually",
    "casually", "suddenly", "carefully", "together", "outside", "again", "today", "tomorrow",
    "yesterday", "now", "soon", "rather", "nearly", "truly", "joyfully", "enough",
)
PLACES = (
    "in the kitchen", "by the river", "at the beach", "near the church", "under the bridge",
    "on the mountain", "behind the house", "in the garage", "through the village",
    "across the town", "inside the shop", "around the garden", "over the hill", "in Asia",
    "at the zoo", "on the island", "down the road", "in the morning", "at night",
    "during the storm", "without a sound", "with much pleasure", "in the usual way",
)
INTERJECTIONS = ("Oh", "Wow", "Look", "Hey", "Oh no", "Well", "Yes", "No", "Ouch", "Hooray")
CONNECTORS = ("and", "but", "because", "so", "while", "although", "until", "when")
SUBJECT_PRONOUNS = ("I", "you", "we", "they", "she", "he")

SLOTS = {
    "name": NAMES, "noun": NOUNS, "adj": ADJECTIVES, "past": VERBS_PAST, "base": VERBS_BASE,
    "ing": VERBS_ING, "adv": ADVERBS, "place": PLACES, "interj": INTERJECTIONS,
    "conn": CONNECTORS, "pron": SUBJECT_PRONOUNS,
}
SLOT_REPEATS = 3  # a template may use e.g. {noun}, {noun2}, {noun3}: three different nouns

TEMPLATES = (
    "{Name} {past} the {adj} {noun}.",
    "{Name} {past} the {adj} {noun} {place}.",
    "The {adj} {noun} {past} the {noun2} {adv}.",
    "Did {name} {base} the {noun} {place}?",
    "Why did you {base} the {adj} {noun}?",
    "Could you {base} my {noun}, please?",
    "Where is the {adj} {noun}?",
    "{Interj}! The {noun} is {adj}!",
    "{Interj}, {name} {past} a {noun}!",
    "I think the {noun} is {adj}, {adv}.",
    "When the {noun} {past} the {noun2}, {name} {past2} the {noun3}.",
    "{Name} was {ing} {place}, {conn} {pron} {past} the {adj} {noun}.",
    "The {noun}, the {noun2}, and the {noun3} are {adj}.",
    "{Pron} {past} a {adj} {noun} {place}, {conn} {name} {past2} it {adv}.",
    "Is the {noun} {adj} or {adj2}?",
    "{Adv}, {pron} {past} the {noun}.",
    "Please {base} the {noun} {adv}.",
    "{Name}'s {noun} is {adj} and {adj2}.",
    "Have you ever seen a {adj} {noun} {ing} {place}?",
    "{Interj}, what a {adj} {noun}!",
    "{Name} and {name2} {past} the {adj} {noun} {place}, {conn} the {noun2} {past2} them.",
    "We should {base} the {noun} {adv}, {conn} it is {adj}.",
    "Nobody {past} the {noun} {place}.",
    "My {noun} is {adj}.",
    "{Name} said the {noun} was {adj}.",
    "Don't {base} the {adj} {noun}!",
    "How many times did {name} {base} the {noun}?",
    "{Name} is {adj}.",
    "Look at {name}!",
    "Where's the {noun}?",
    "{Interj}, {name}, the {noun} {past} the {adj} {noun2}!",
    "The {noun} {past} the {noun2}. Then {pron} {past2} the {adj} {noun3} {place}, {adv}!",
    "When {name} and {name2} {past} the {adj} {noun} {place}, "
    "the {adj2} {noun2} {past2} them {adv}.",
)


def _fill(template: str, rng: random.Random) -> str:
    """Fill the slots of `template` with words drawn by `rng`.

    Slot "noun" takes a word of NOUNS, "noun2" and "noun3" other words of it (likewise for every
    list of SLOTS); a capitalised slot ("Name") capitalises the word.
    """
    values = {}
    for key, words in SLOTS.items():
        for i, word in enumerate(rng.sample(words, SLOT_REPEATS)):
            slot = key if i == 0 else f"{key}{i + 1}"
            values[slot] = word
            values[slot.capitalize()] = word[0].upper() + word[1:]
    return template.format(**values)


def _with_articles(sentence: str) -> str:
    """Turn "a" into "an" before a vowel sound ("an apple", but "a usual")."""
    return re.sub(r"\b([Aa]) (?=[aeioAEIO]|u(?!s))", r"\1n ", sentence)


def sentences(seed: int, n: int) -> list[str]:
    """`n` English sentences of MIN_WORDS..MAX_WORDS words; the same seed gives the same list."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        sentence = _with_articles(_fill(rng.choice(TEMPLATES), rng))
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            out.append(sentence)
    return out


def split_of(key: str) -> str:
    """"train", "val" or "test" for `key`, from its SHA-1 (ratios SPLIT_RATIOS), stable anywhere."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    for name, ratio in SPLIT_RATIOS[:-1]:
        if u < ratio:
            return name
        u -= ratio
    return SPLIT_RATIOS[-1][0]


def phone_coverage(utterances_phones: Iterable[list[str]]) -> dict[str, int]:
    """Count of each ARPAbet phone over all utterances (every phone of ARPABET, zeros included).

    Symbols outside ARPABET (SIL) are not counted.
    """
    counts = Counter(p for phones in utterances_phones for p in phones if p in ARPABET)
    return {p: counts[p] for p in ARPABET}


def coverage_table(counts: dict[str, int]) -> str:
    """Markdown table of phone, count and share (% of all counted phones), most common first.

    A phone whose share is under RARE_SHARE is marked "**rare**".
    """
    total = max(sum(counts.values()), 1)
    lines = ["| phone | count | share % |", "|---|---:|---:|"]
    for phone, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        share = count / total
        flag = " **rare**" if share < RARE_SHARE else ""
        lines.append(f"| {phone} | {count} | {100 * share:.2f}{flag} |")
    return "\n".join(lines)
