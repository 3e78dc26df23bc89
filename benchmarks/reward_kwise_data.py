"""Synthetic, learnable rankings for benchmarks/reward_kwise.py, generated with a fixed seed: each
question has answers graded by construction (correct + polite + detailed > … > vague > wrong > wrong
and rude). Scenarios: k4 and k9 (K answers to a short question), k2-long (K = 2 behind a multi-turn
conversation of a few hundred tokens), hh (K = 2, shaped like Anthropic HH: multi-turn prompts of
very different lengths, median ~140 tokens and p90 ~300, answers of 30–40 tokens)."""

import random

from training.ml.reward_data import Ranking

FACTS = [
    ("France", "Paris", "Berlin"),
    ("Japan", "Tokyo", "Seoul"),
    ("Italy", "Rome", "Madrid"),
    ("Germany", "Berlin", "Vienna"),
    ("Spain", "Madrid", "Lisbon"),
    ("Canada", "Ottawa", "Toronto"),
    ("Australia", "Canberra", "Sydney"),
    ("Egypt", "Cairo", "Alexandria"),
    ("Kenya", "Nairobi", "Mombasa"),
    ("Brazil", "Brasília", "Rio de Janeiro"),
    ("India", "New Delhi", "Mumbai"),
    ("Mexico", "Mexico City", "Cancún"),
    ("Norway", "Oslo", "Bergen"),
    ("Sweden", "Stockholm", "Gothenburg"),
    ("Greece", "Athens", "Sparta"),
    ("Turkey", "Ankara", "Istanbul"),
    ("Peru", "Lima", "Cusco"),
    ("Chile", "Santiago", "Valparaíso"),
    ("Vietnam", "Hanoi", "Saigon"),
    ("Thailand", "Bangkok", "Phuket"),
    ("Poland", "Warsaw", "Kraków"),
    ("Portugal", "Lisbon", "Porto"),
    ("Ireland", "Dublin", "Cork"),
    ("Argentina", "Buenos Aires", "Córdoba"),
    ("Morocco", "Rabat", "Casablanca"),
    ("Nigeria", "Abuja", "Lagos"),
    ("Switzerland", "Bern", "Zurich"),
    ("Austria", "Vienna", "Salzburg"),
    ("Finland", "Helsinki", "Turku"),
    ("Denmark", "Copenhagen", "Aarhus"),
    ("Taiwan", "Taipei", "Kaohsiung"),
    ("South Korea", "Seoul", "Busan"),
]
POLITE_OPEN = ["Great question!", "Happy to help!", "Thanks for asking!", "Good question!"]
POLITE_CLOSE = ["I hope this helps!", "Let me know if you have more questions.", "Have a wonderful day!"]
DETAIL = [
    "It is also the country's largest political centre.",
    "The government and parliament sit there.",
    "It has been the seat of government for a long time.",
]
VAGUE = [
    "That is a tricky one; it is one of the bigger cities there, I believe.",
    "There are many cities in {country}, and the capital is one of them.",
    "It depends on how you look at it, but it is somewhere in {country}.",
]
RUDE = ["Look it up yourself.", "Why would you even ask that?", "Stop bothering me."]


def graded_answers(rng: random.Random, country: str, right: str, wrong: str, k: int) -> list[str]:
    """k answers from best to worst (k is 2, 4 or 9)."""
    fact, false = f"The capital of {country} is {right}.", f"The capital of {country} is {wrong}."
    polite, close, detail = rng.choice(POLITE_OPEN), rng.choice(POLITE_CLOSE), rng.choice(DETAIL)
    vague, rude = rng.choice(VAGUE).format(country=country), rng.choice(RUDE)
    ladder = [
        f"{polite} {fact} {detail} {close}",  # correct, polite, detailed
        f"{polite} {fact} {close}",  # correct, polite
        f"{fact} {detail}",  # correct, detailed
        fact,  # correct
        f"{right}.",  # correct, terse
        f"I think it might be {right}, but I am not sure.",  # hedged
        vague,  # vague
        false,  # wrong
        f"{false} {rude}",  # wrong and rude
    ]
    picks = {2: [1, 7], 4: [1, 3, 6, 7], 9: list(range(9))}[k]
    return [ladder[i] for i in picks]


TOPICS = [
    "planning a trip through Europe",
    "learning to cook at home",
    "training for a half marathon",
    "choosing a first programming language",
    "keeping house plants alive",
    "saving money for a holiday",
]
CHATTER = [
    "I have been thinking about this for a while and I would like some practical advice.",
    "My budget is limited, so I am trying to be careful with every decision I make.",
    "A friend told me a few things already, but I am not sure whether they were right.",
    "I usually have about an hour in the evening to spend on this, sometimes a bit more on weekends.",
    "Last year I tried something similar and it did not go very well, so I want to do better this time.",
    "Could you explain it step by step, and mention the mistakes beginners usually make?",
]
REPLIES = [
    "Start small and be consistent: a little progress every day adds up faster than occasional big efforts.",
    "Write down what you want to achieve, then break it into steps you can finish in a single evening.",
    "Most beginners try to do everything at once; pick one thing, get comfortable with it, then add the next.",
    "Keep notes on what worked and what did not, so you can adjust your plan after the first couple of weeks.",
    "Ask for feedback early, from friends or online communities, since small corrections save a lot of time later.",
]


def long_conversation(rng: random.Random, country: str, turns: int = 3) -> list[dict]:
    """A multi-turn conversation of a few hundred tokens, ending with the question to answer."""
    topic = rng.choice(TOPICS)
    messages = [{"role": "system", "content": "You are a friendly, careful assistant."}]
    for turn in range(turns):
        opener = f"I need help with {topic}. " if turn == 0 else ""
        messages.append({"role": "user", "content": opener + " ".join(rng.sample(CHATTER, 3))})
        messages.append({"role": "assistant", "content": " ".join(rng.sample(REPLIES, 3))})
    messages.append(
        {"role": "user", "content": f"Thanks! One more thing, unrelated: what is the capital of {country}?"}
    )
    return messages


# Earlier turns of an HH-like conversation: most have one or two, a few none or three.
HH_TURNS = [0, 1, 1, 1, 1, 1, 1, 2, 2, 3]


def hh_conversation(rng: random.Random, country: str) -> list[dict]:
    """A conversation of 0–4 earlier turns of 1–3 sentences each, ending with the question."""
    topic = rng.choice(TOPICS)
    messages = []
    for turn in range(rng.choice(HH_TURNS)):
        opener = f"I need help with {topic}. " if turn == 0 else ""
        messages.append({"role": "user", "content": opener + " ".join(rng.sample(CHATTER, rng.randint(1, 3)))})
        messages.append({"role": "assistant", "content": " ".join(rng.sample(REPLIES, rng.randint(1, 3)))})
    messages.append({"role": "user", "content": f"Also, what is the capital of {country}?"})
    return messages


def hh_answers(rng: random.Random, country: str, right: str, wrong: str) -> list[str]:
    """A better and a worse answer of similar length (30–40 tokens): length says nothing here."""
    close, detail = rng.choice(POLITE_CLOSE), rng.choice(DETAIL)
    return [
        f"{rng.choice(POLITE_OPEN)} The capital of {country} is {right}. {detail} {close} {rng.choice(POLITE_CLOSE)}",
        f"The capital of {country} is {wrong}. {detail} {rng.choice(RUDE)} {close}",
    ]


def make_rankings(scenario: str, count: int, seed: int) -> list[Ranking]:
    rng = random.Random(seed)
    k = {"k4": 4, "k9": 9, "k2-long": 2, "hh": 2}[scenario]
    rankings = []
    for i in range(count):
        country, right, wrong = FACTS[i % len(FACTS)]
        if scenario == "hh":
            prompt, answers = hh_conversation(rng, country), hh_answers(rng, country, right, wrong)
        elif scenario == "k2-long":
            prompt = long_conversation(rng, country)
        else:
            asks = [
                f"What is the capital of {country}?",
                f"Which city is the capital of {country}?",
                f"Tell me the capital city of {country}, please.",
            ]
            prompt = [{"role": "user", "content": f"{rng.choice(asks)} (question {i})"}]
        if scenario != "hh":
            answers = graded_answers(rng, country, right, wrong, k)
        order = list(range(k))
        rng.shuffle(order)  # the best answer is not always first
        rankings.append(Ranking(prompt, [answers[j] for j in order], [j + 1 for j in order]))
    return rankings
