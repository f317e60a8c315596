"""Regenerate the preference pairs: python datasets/quickstart-dpo/make_quickstart_dpo.py

Built from the quickstart task (datasets/quickstart): each request keeps its correct JSON as the preferred
answer, and gets one plausible mistake as the rejected answer, in turn:
  wrong_field  the right values under a wrong key ("date" for "day", "person" for "with", ...)
  malformed    broken JSON (single quotes, or the closing brace missing)
  chatty       a friendly preamble before the JSON ("Sure! Here is ...")
  clock_time   the time as people say it ("5pm", "9:30am") instead of the 24-hour "17:00" the schema asks for
Deterministic (seeded); train and test keep quickstart's split, so no prompt is in both."""

import json
import random
from pathlib import Path

RENAMES = [("day", "date"), ("with", "person"), ("time", "when"), ("topic", "subject"), ("action", "type")]
PREAMBLES = ["Sure! Here is the JSON for your request:\n", "Of course. Here's the meeting as JSON:\n\n",
             "Happy to help! ", "Here you go:\n"]


def wrong_field(answer: dict, rng: random.Random) -> str:
    old, new = rng.choice(RENAMES)
    return json.dumps({new if k == old else k: v for k, v in answer.items()})


def malformed(answer: dict, rng: random.Random) -> str:
    text = json.dumps(answer)
    return text.replace('"', "'") if rng.random() < 0.5 else text[:-1]


def chatty(answer: dict, rng: random.Random) -> str:
    return rng.choice(PREAMBLES) + json.dumps(answer)


def clock_time(answer: dict, rng: random.Random) -> str:
    hours, minutes = (int(part) for part in answer["time"].split(":"))
    spoken = f"{hours % 12 or 12}{f':{minutes:02d}' if minutes else ''}{'pm' if hours >= 12 else 'am'}"
    return json.dumps({**answer, "time": spoken})


MISTAKES = [wrong_field, malformed, chatty, clock_time]


def pair(row: dict, index: int, rng: random.Random) -> dict:
    system, user, assistant = row["messages"]
    answer = json.loads(assistant["content"])
    rejected = MISTAKES[index % len(MISTAKES)](answer, rng)
    return {"input": {"messages": [system, user]}, "preferred_output": [assistant],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def main() -> None:
    here = Path(__file__).parent
    rng = random.Random(11)
    for name in ("train", "test"):
        rows = [json.loads(line) for line in (here.parent / "quickstart" / f"{name}.jsonl").read_text().splitlines()]
        with open(here / f"{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps(pair(r, i, rng)) + "\n" for i, r in enumerate(rows))


if __name__ == "__main__":
    main()
