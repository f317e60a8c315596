"""Regenerate the quickstart dataset: python datasets/quickstart/make_quickstart.py

A narrow format-learning task: turn a short scheduling request into one fixed JSON shape.
Deterministic (seeded); train and test share no example."""

import json
import random
from pathlib import Path

SYSTEM = ('Convert the request into JSON with the keys "action" (schedule, cancel or move), '
          '"with", "day", "time" (24-hour HH:MM) and "topic" (null when none is given). Reply with JSON only.')
NAMES = ["Ana", "Omar", "Priya", "Lee", "Sam", "Mia", "Noah", "Kenji", "Zoe", "Ravi", "Eva", "Tom", "Lina", "Jon"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
TOPICS = ["the budget", "the roadmap", "hiring", "the launch", "onboarding", "the demo", "pricing", "the audit"]
TIMES = [(9, 0), (9, 30), (10, 0), (11, 0), (11, 30), (13, 0), (14, 0), (15, 0), (15, 30), (16, 0), (17, 0)]
TEMPLATES = {
    "schedule": ["Set up a meeting with {who} on {day} at {time}{about}.",
                 "Book a call with {who} {day} {time}{about}.",
                 "Can you schedule time with {who} on {day} at {time}{about}?"],
    "cancel": ["Cancel my {day} {time} with {who}.",
               "Please drop the meeting with {who} on {day} at {time}{about}."],
    "move": ["Move my meeting with {who} to {day} at {time}{about}.",
             "Reschedule {who} to {day}, {time}{about}."],
}


def spoken(hour: int, minute: int) -> str:
    suffix = "am" if hour < 12 else "pm"
    h = hour if hour <= 12 else hour - 12
    return f"{h}{suffix}" if minute == 0 else f"{h}:{minute:02d}{suffix}"


def example(rng: random.Random) -> dict:
    action = rng.choice(list(TEMPLATES))
    who, day, (hour, minute) = rng.choice(NAMES), rng.choice(DAYS), rng.choice(TIMES)
    topic = rng.choice(TOPICS + [None, None])
    request = rng.choice(TEMPLATES[action]).format(
        who=who, day=day, time=spoken(hour, minute), about=f" about {topic}" if topic else "")
    if "{about}" not in "".join(TEMPLATES[action]) or ("about" not in request):
        topic = None
    answer = {"action": action, "with": who, "day": day, "time": f"{hour:02d}:{minute:02d}",
              "topic": topic.removeprefix("the ") if topic else None}
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": request},
                         {"role": "assistant", "content": json.dumps(answer)}]}


def main() -> None:
    rng = random.Random(7)
    seen, rows = set(), []
    while len(rows) < 280:
        row = example(rng)
        key = row["messages"][1]["content"]
        if key not in seen:
            seen.add(key)
            rows.append(row)
    here = Path(__file__).parent
    for name, part in (("train", rows[:240]), ("test", rows[240:])):
        with open(here / f"{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in part)


if __name__ == "__main__":
    main()
