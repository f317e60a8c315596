"""Regenerate the style dataset: python datasets/style/make_style.py

An open-ended task: rewrite a plain customer-support answer (American spelling, exclamation marks, filler,
banned words, sometimes four to seven sentences) into the house style that style_rules.py checks: "Hello," on
the first line, "Kind regards, the Support Team" on the last, British spelling, no exclamation mark, at most
three sentences, preferred words only. The rewrite keeps every amount, date and order number.

How an example is made: a scenario (billing, shipping, accounts, returns or technical) gives two or three
essential sentences, each in one of a few phrasings, with slots filled at random (order numbers, amounts, dates,
counts). The source answer wraps them in filler (openers, closers, a sentence restating a figure) and sometimes
an informal greeting and sign-off. The rewrite keeps the essential sentences only, in order, with every banned
word replaced by its preferred word and every American spelling by the British one (style_rules.BANNED and
style_rules.AMERICAN), "!" made ".", between the fixed greeting and sign-off. So the summary is deterministic.

Deterministic (seeded). Every rewrite meets every rule and keeps the source's figures; every source breaks at
least one rule besides the greeting and sign-off. A candidate too close to an example already kept (the same
words once digits are masked, or a word-set Jaccard similarity of NEAR or more) is dropped, so no two examples,
and in particular no test and training example, are near duplicates. Splits: train 240, validation 40, test 60.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("style_rules", HERE / "style_rules.py")
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)

SEED = 27
SPLITS = (("train", 240), ("validation", 40), ("test", 60))
NEAR = 0.75  # word-set Jaccard similarity (digits masked) at or above which two sources count as near duplicates
MAX_REWRITE_WORDS = 90  # words and punctuation marks: a rewrite stays well under 120 SmolLM2 tokens

SYSTEM = ('Rewrite the support answer in the house style. "Hello," on the first line, "Kind regards, the Support '
          'Team" on the last, British spelling, no exclamation marks, at most three sentences keeping every figure '
          'and date, and no "unfortunately", "ASAP", "guys", "problem" or "cheap".')

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
PLANS = ["Basic", "Plus", "Pro", "Team", "Family"]
ITEMS = ["jacket", "backpack", "blender", "desk lamp", "speaker", "kettle", "toaster", "coffee grinder",
         "umbrella", "phone case", "yoga mat", "water bottle"]
CLOTHES = ["jacket", "sneakers", "rain boots", "sweater", "jeans", "dress", "hoodie", "hiking boots"]
CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]

# Each scenario: its essential sentences, each a list of phrasings. {slots} are filled by slots() below.
SCENARIOS = {
    "billing": [
        [["We looked into your account and you were charged {amount} twice for order {order}.",
          "I checked and order {order} was billed twice, {amount} each time.",
          "You're right, order {order} was charged {amount} two times."],
         ["Unfortunately, the second charge was caused by a glitch in our payment system.",
          "The duplicate charge was a problem on our side, not with your card.",
          "It was our mistake, and your card is fine."],
         ["We have canceled the extra charge and the refund should show up by {date}.",
          "The extra {amount} has been canceled and will be back on your card by {date}.",
          "We reversed the duplicate and you'll see the money again by {date}!"]],
        [["Unfortunately, your card ending in {last4} was declined when we tried to renew your {plan} plan.",
          "Your card ending in {last4} was declined for the {plan} plan renewal.",
          "We couldn't charge the card ending in {last4} for your {plan} plan."],
         ["Please update your payment details in the billing center ASAP so your service isn't interrupted.",
          "Kindly add a new card in the billing center before {date} to keep your account active.",
          "You can add another card from the billing center by {date} to avoid any interruption."],
         ["The amount due is {amount}.", "Your balance right now is {amount}."]],
        [["Your invoice for {month} is now in the billing center under Documents.",
          "You can download the {month} invoice from the billing center.",
          "FYI, the {month} invoice is ready in the billing center!"],
         ["The total was {amount}, including tax.", "It comes to {amount} with tax included."],
         ["Invoices are always created on the {day_of_month} of each month.",
          "A new invoice shows up on the {day_of_month} of every month."]],
        [["If you want something cheaper, our {plan} plan is {amount} a month.",
          "Our {plan} plan costs {amount} a month and is a cheaper option.",
          "The {plan} plan, at {amount} a month, is the most affordable one we have."],
         ["You can switch plans from the billing center at any time.",
          "Switching is super easy from the billing center."],
         ["The change would take effect on {date}.", "Your new price starts on {date}."]],
        [["We've refunded {amount} to your original payment method.",
          "A refund of {amount} is on its way to the card you paid with!",
          "We sent {amount} back to your original payment method."],
         ["It can take up to {days} business days for your bank to post it.",
          "Your bank may need {days} business days to show it."],
         ["Your reference number is {ref}.", "Keep the reference {ref} in case you need it."]],
    ],
    "shipping": [
        [["Your order {order} is delayed because of a problem at our fulfillment center.",
          "Order {order} is running late due to a problem at our warehouse.",
          "Unfortunately, order {order} got held up at our fulfillment center."],
         ["It's now expected to arrive on {date}.", "The new delivery date is {date}.",
          "You should have it by {date}!"]],
        [["Your package shipped on {date} with {carrier} tracking number {trk}.",
          "Order {order} left our warehouse on {date}, tracking number {trk}.",
          "Great news, your {item} shipped on {date} and the tracking number is {trk}!"],
         ["You can follow it on the {carrier} website.", "Tracking updates can take a day to appear."],
         ["Delivery usually takes {days} business days.", "Expect it within {days} business days."]],
        [["We updated the shipping address on order {order} as you asked.",
          "The new address is now on order {order}.",
          "Done, order {order} will go to your new address!"],
         ["Unfortunately, we can't change it again once the package leaves the distribution center.",
          "It can't be changed again after the package leaves the distribution center.",
          "Please note we can't change it a second time after it ships."]],
        [["The carrier marked order {order} as lost on {date}.",
          "{carrier} told us order {order} was lost in transit on {date}.",
          "Unfortunately, {carrier} lost order {order} on {date}."],
         ["We've sent a replacement {item} at no cost, and it should arrive by {date2}.",
          "A new {item} is on its way for free and should get to you by {date2}."]],
        [["Express shipping costs {amount} and gets your order to you in {days} days.",
          "For {amount}, express shipping delivers in {days} days."],
         ["Standard shipping is cheaper but takes about {days2} days.",
          "Standard shipping is free and takes about {days2} days.",
          "If that's too much, standard shipping takes about {days2} days."],
         ["You can pick either one at checkout.", "Just choose the option you want at checkout!"]],
    ],
    "accounts": [
        [["We sent a password reset link to the email on your account.",
          "A reset link is on its way to your inbox!",
          "Check your email for the password reset link we just sent."],
         ["The link expires in {hours} hours, so please use it ASAP.",
          "It only works for {hours} hours.",
          "Please use it within {hours} hours."],
         ["If it doesn't show up, check your spam folder.",
          "If you don't see it, look in your spam folder, it sometimes lands there."]],
        [["Your account was locked after {attempts} failed sign-in attempts.",
          "We locked your account after {attempts} wrong passwords in a row.",
          "For your safety, the account locked after {attempts} failed logins."],
         ["It will unlock automatically in {minutes} minutes.",
          "You can try again in {minutes} minutes!"],
         ["Kindly reset your password if you don't remember it.",
          "If you forgot your password, please reset it instead."]],
        [["We've updated the email on your account to the new address.",
          "Your account email has been changed!",
          "The new email address is now on your account."],
         ["Please confirm it from the message we just sent.",
          "You'll need to click the confirmation link we sent."],
         ["Your favorite items and saved carts carry over.",
          "Your favorites and order history stay the same.",
          "Nothing else changes, so your saved items are safe."]],
        [["We received your account deletion request {ref}.",
          "Your request {ref} to delete your account is in.",
          "Account deletion request {ref} has been logged."],
         ["All your data will be removed within {days} days.",
          "We'll erase your data within {days} days."],
         ["If you change your mind, contact us before {date}.",
          "You can cancel the request until {date}!"]],
        [["You can customize your profile color from the Settings page.",
          "To change your profile color, go to Settings and pick one.",
          "Profile colors can be customized under Settings!"],
         ["Changes are saved automatically.", "It saves as soon as you pick one."]],
    ],
    "returns": [
        [["We've emailed you a prepaid return label for order {order}.",
          "A free return label for order {order} is in your inbox!",
          "Your return label for order {order} was just sent by email."],
         ["Please drop the package off at any {carrier} location by {date}.",
          "Kindly drop it at a {carrier} store before {date}."],
         ["Once we receive it, your refund of {amount} will be processed within {days} business days.",
          "Your {amount} refund goes out within {days} business days of it reaching us."]],
        [["Unfortunately, order {order} is outside our {window}-day return window.",
          "Order {order} is past the {window}-day return window.",
          "I'm sorry, but order {order} is more than {window} days old, so it can't be returned."],
         ["We can offer store credit of {amount} instead.",
          "We'd be happy to give you {amount} in store credit instead!"]],
        [["We can exchange the {clothes} for a different size or color.",
          "Swapping your {clothes} for another size or color is no problem!",
          "You can exchange the {clothes} for another size or color."],
         ["Just ship it back with the exchange form and we'll send the new one ASAP.",
          "Send it back with the exchange form and the new one ships the day it arrives."],
         ["The exchange is free on order {order}.", "There's no fee for exchanges on order {order}."]],
        [["We're so sorry your {item} from order {order} arrived damaged!",
          "I'm sorry to hear order {order} showed up broken.",
          "Sorry about the damaged {item} on order {order}, that's a real hassle."],
         ["We have canceled the charge of {amount}, and you don't need to send anything back.",
          "The {amount} charge was canceled and you can keep or recycle the item."]],
        [["Opened items have a restocking fee of {pct}%.",
          "There's a {pct}% restocking fee on anything that's been opened."],
         ["Your refund for order {order} will be {amount} after the fee.",
          "That makes your refund for order {order} {amount}!"]],
    ],
    "technical": [
        [["The crash you're seeing in version {version} is a known problem.",
          "Version {version} has a glitch that makes the app close on startup.",
          "We know about the crash in version {version}."],
         ["Our team fixed it in version {version2}, which rolls out on {date}.",
          "Version {version2} fixes it and comes out on {date}!"],
         ["Updating the app should solve it.", "Please update once it's out."]],
        [["Your license key was sent to the email you used at checkout.",
          "We just resent your license key to your checkout email!",
          "Check your checkout email for the license key."],
         ["Each license covers up to {devices} devices.",
          "One license works on {devices} devices."],
         ["If you need more seats, you can buy another license from your account page.",
          "Extra licenses are available from your account page."]],
        [["Your files stopped syncing because your {cap} GB of storage is full.",
          "Syncing paused since you've used all {cap} GB of your storage.",
          "Unfortunately, sync stopped because all {cap} GB of your storage are used."],
         ["You can free up space or upgrade to a bigger plan.",
          "Deleting old files or upgrading will get it going again!"]],
        [["We had an outage on {date} that affected the dashboard for about {hours} hours.",
          "The dashboard was down for about {hours} hours on {date}.",
          "Sorry guys, our dashboard had an outage of about {hours} hours on {date}."],
         ["Everything is working again, and no data was lost.",
          "It's back up and your data is safe!"],
         ["We've added a credit of {amount} to your account for the trouble.",
          "As an apology, {amount} has been credited to your account."]],
        [["You can organize your saved items into folders from the catalog page.",
          "Saved items can be organized into folders on the catalog page!",
          "To organize saved items, open the catalog page and make a folder."],
         ["Each folder holds up to {limit} items.", "A folder can hold {limit} items at most."]],
    ],
}
# Filler the rewrite drops: openers and closers hold no figure, so dropping them loses no fact.
OPENERS = ["Thanks so much for reaching out!", "Thanks for contacting us.", "Great question!",
           "Thanks for your patience, guys!", "We totally understand how frustrating this is.",
           "Thanks for getting in touch with our help center!", "Sorry for the wait!",
           "Hey there, thanks for your message.", "We really appreciate you letting us know about this problem."]
CLOSERS = ["Let us know if you have any other questions!", "Hope this helps!", "Have an awesome day!",
           "We're always happy to help.", "Sorry again for the hassle!", "We really appreciate your business!",
           "Feel free to reach out if you run into any other problems.", "Thanks for being a loyal customer!",
           "Just reply to this email if anything else comes up.", "We apologize for any inconvenience.",
           "Have a great weekend!", "We hope to see you again soon."]
# A sentence restating one figure already in an essential sentence: the rewrite drops it too.
RESTATE = {"order": ["Again, your order number is {order}.", "For reference, that's order {order}!"],
           "amount": ["Just to be clear, that's {amount}.", "So the amount is {amount}!"],
           "date": ["Again, mark {date} on your calendar!", "So {date} is the date to remember."]}
GREETINGS = ["Hi there,", "Hey!", "Hi,", "Hello there!"]
SIGN_OFFS = ["Thanks,\nSupport", "Cheers,\nThe Support Team", "Best,\nCustomer Care", "Thanks!"]


def slots(rng: random.Random) -> dict[str, str]:
    month = rng.choice(MONTHS)
    day = rng.randint(1, 20)
    version = (rng.randint(3, 9), rng.randint(0, 9))
    return {
        "order": f"#{rng.randint(10000, 99999)}",
        "amount": f"${rng.randint(5, 249)}.{rng.choice([0, 25, 49, 50, 75, 95, 99]):02d}",
        "date": f"{month} {day}", "date2": f"{month} {day + rng.randint(3, 8)}",
        "month": rng.choice(MONTHS),
        "day_of_month": rng.choice(["1st", "5th", "10th", "15th", "28th"]),
        "last4": f"{rng.randint(0, 9999):04d}", "plan": rng.choice(PLANS), "item": rng.choice(ITEMS),
        "clothes": rng.choice(CLOTHES),
        "carrier": rng.choice(CARRIERS), "ref": f"RF{rng.randint(10000, 99999)}",
        "trk": f"TR{rng.randint(10**7, 10**8 - 1)}",
        "days": str(rng.choice([2, 3, 5, 7, 10])), "days2": str(rng.choice([6, 8, 12, 14])),
        "hours": str(rng.choice([2, 3, 4, 6, 12, 24, 48])), "minutes": str(rng.choice([15, 30, 45, 60])),
        "attempts": str(rng.choice([3, 5, 6, 10])), "window": str(rng.choice([14, 30, 60, 90])),
        "pct": str(rng.choice([10, 15, 20, 25])), "devices": str(rng.choice([2, 3, 5, 10])),
        "cap": str(rng.choice([5, 10, 15, 50, 100])),
        "limit": str(rng.choice([50, 100, 250, 500])),
        "version": f"{version[0]}.{version[1]}", "version2": f"{version[0]}.{version[1] + 1}",
    }


def _cased(replacement: str, original: str) -> str:
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() and not original.isupper() \
        else replacement


def house(sentence: str) -> str:
    """One essential sentence in the house style: preferred words, British spelling, no exclamation mark."""
    opening = re.match(r"Unfortunately, (\S+)", sentence)
    if opening:  # "Unfortunately, your card ..." -> "I'm sorry that your card ..."
        word = opening.group(1)
        keep = word == "I" or word[:1].isupper() and word not in ("Your", "We", "The", "It", "Our", "This")
        sentence = "I'm sorry that " + (word if keep else word.lower()) + sentence[opening.end():]
    sentence = re.sub(r",? unfortunately,?", "", sentence, flags=re.IGNORECASE)

    def article(match: re.Match) -> str:  # "a problem" -> "an issue", "an awesome" -> "a great"
        det, word = match.group(1), match.group(2)
        new = _cased(rules.BANNED[word.lower()], word)
        want = "an" if new[:1].lower() in "aeiou" else "a"
        return _cased(want, det) + " " + new

    sentence = re.sub(r"\b(an?) (" + "|".join(w for w in rules.BANNED if w != "unfortunately") + r")\b",
                      article, sentence, flags=re.IGNORECASE)
    sentence = rules._BANNED.sub(lambda m: _cased(rules.BANNED[m.group(0).lower()], m.group(0)), sentence)
    sentence = rules._AMERICAN.sub(lambda m: _cased(rules.AMERICAN[m.group(0).lower()], m.group(0)), sentence)
    sentence = sentence.replace("!", ".")
    return sentence[:1].upper() + sentence[1:]


def words(text: str) -> frozenset[str]:
    """The words of a source for the near-duplicate test: lower case, every digit masked as 0."""
    return frozenset(re.findall(r"[a-z']+|0+", re.sub(r"\d", "0", text.lower())))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def example(rng: random.Random) -> dict:
    category = rng.choice(list(SCENARIOS))
    scenario = rng.choice(SCENARIOS[category])
    fill = slots(rng)
    templates = [rng.choice(variants) for variants in scenario]
    essentials = [template.format(**fill) for template in templates]
    if rng.random() < 0.15:  # an excited source: the last essential sentence ends with "!"
        essentials[-1] = essentials[-1].removesuffix(".") + "!" if essentials[-1].endswith(".") else essentials[-1]
    used = [key for key in RESTATE if any("{" + key + "}" in template for template in templates)]
    source = rng.sample(OPENERS, rng.choice([0, 0, 0, 1, 1, 2])) + essentials
    if used and rng.random() < 0.3:
        source.append(rng.choice(RESTATE[rng.choice(used)]).format(**fill))
    source += rng.sample(CLOSERS, rng.choice([0, 0, 1, 1, 2]))
    text = " ".join(source)
    if rng.random() < 0.2:
        text = rng.choice(GREETINGS) + "\n" + text
    if rng.random() < 0.2:
        text = text + "\n" + rng.choice(SIGN_OFFS)
    rewrite = "\n".join([rules.GREETING, " ".join(house(s) for s in essentials), rules.SIGN_OFF])
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text},
                         {"role": "assistant", "content": rewrite}]}


def build() -> dict[str, list[dict]]:
    """The three splits, each a list of chat examples ({"messages": [...]})."""
    rng = random.Random(SEED)
    total = sum(size for _, size in SPLITS)
    kept: list[dict] = []
    seen: list[frozenset[str]] = []
    while len(kept) < total:
        row = example(rng)
        source, rewrite = row["messages"][1]["content"], row["messages"][2]["content"]
        assert all(rules.check(rewrite).values()), (rewrite, rules.check(rewrite))
        assert rules.facts_kept(source, rewrite), (source, rewrite)
        assert len(re.findall(r"\w+|[^\w\s]", rewrite)) <= MAX_REWRITE_WORDS, rewrite
        content = {rule: ok for rule, ok in rules.check(source).items() if rule not in ("greeting", "sign_off")}
        if all(content.values()):
            continue  # only the greeting and sign-off to add: too easy to teach anything
        key = words(source)
        if any(key == other or jaccard(key, other) >= NEAR for other in seen):
            continue
        seen.append(key)
        kept.append(row)
    splits, start = {}, 0
    for name, size in SPLITS:
        splits[name] = kept[start:start + size]
        start += size
    return splits


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    """Write train.jsonl, validation.jsonl and test.jsonl into --out (default: beside this script)."""
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in build().items():
        (out / f"{name}.jsonl").write_text(render(rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
