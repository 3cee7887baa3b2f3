"""The card-data detector: CVV keys, card numbers in any shape, test cards. No Flask, no database.

What it finds (docs/security.md lists it, tests/test_cards.py proves it):
- a CVV key: its name normalised (NFKC, lower case, everything but letters and digits removed)
  contains an unambiguous CVV word, or is one of the short or generic names, alone or after a
  card prefix (CVV_WORDS, CVV_NAMES, CARD_PREFIXES);
- a card number: a run of 13 to 19 digits passing Luhn, its digits separated by any number of
  spaces, dots or dashes, after NFKC normalisation (full-width and other compatibility digits),
  in any Unicode decimal digits, inside any text, or a JSON number (an integer, or a float with
  nothing after the point: 4012888888881881.0). A longer run of digit groups is searched group
  by group (two cards side by side are two cards); a single unbroken run of over 19 digits is
  no card.
"""
import functools
import re
import unicodedata

# Found anywhere in a normalised key: nothing else is spelled with them.
CVV_WORDS = ("cvv", "cvc", "cvn", "cav2", "securitycode", "verificationcode", "verificationvalue", "cardcode",
             "cardverification", "cardsecurity")
# Too short or too generic to be found inside another name: the whole key, alone or after a card
# prefix and before a suffix (cardCid, cc_csc, CCV, CSV, secCode, securityNumber, CV2, CID...).
CVV_NAMES = ("cid", "csc", "csv", "cvd", "ccv", "cv2", "seccode", "securitynumber", "securityno", "securitynum",
             "security", "verification", "verificationnumber", "verificationno")
CARD_PREFIXES = ("", "card", "cc", "credit", "creditcard", "debitcard", "payment", "paymentcard", "billing",
                 "billingcard")
CVV_SUFFIXES = ("", "code", "number", "no", "num", "value", "val")
# Alone, these say nothing of a card: only after a card prefix.
PREFIX_ONLY = frozenset({"security", "verification", "verificationnumber", "verificationno"})
CVV_KEYS = frozenset(prefix + name + suffix for prefix in CARD_PREFIXES for name in CVV_NAMES
                     for suffix in CVV_SUFFIXES if prefix or name not in PREFIX_ONLY)

NOT_ALNUM = re.compile(r"[^a-z0-9]")
MIN_DIGITS, MAX_DIGITS = 13, 19
SEPARATORS = " .-"
# Digits joined by separators (any count between two digits); \d is any Unicode decimal digit.
DIGIT_RUN = re.compile(r"\d(?:[ .\-]*+\d)*+")
GROUP = re.compile(r"\d+")
# The cheap tests before the search, in turn: 13 characters in a row that are digits or separators,
# from a digit (no retry at each position: most texts fail it at once); then 13 digits in a row,
# separators allowed between them (an order date passes the first, fails this one).
MAYBE_RUN = re.compile(r"\d[\d .\-]{12}")
MAYBE_CARD = re.compile(r"(?:\d[ .\-]*+){13}")


def maybe_card(text):
    return MAYBE_RUN.search(text) is not None and MAYBE_CARD.search(text) is not None
MASK = "*"


def normalised_key(key):
    """A key as CVV names are compared: NFKC, lower case, separators and punctuation removed."""
    return NOT_ALNUM.sub("", unicodedata.normalize("NFKC", str(key)).lower())


@functools.lru_cache(maxsize=4096)  # an order's keys repeat from one event to the next: a dict lookup
def is_cvv_key(key):
    """card_cvv, cvvCode, CV2, ccv, billing's secCode, cardSecurity...: a card's verification code."""
    name = normalised_key(key)
    return name in CVV_KEYS or any(word in name for word in CVV_WORDS)


def luhn_ok(digits):
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def mask(digits):
    """First 6 and last 4 digits at most, as PCI DSS allows."""
    if len(digits) < 12:
        return "****" if digits else ""
    return digits[:6] + MASK * (len(digits) - 10) + digits[-4:]


def canonical(number):
    """A card number as test cards are compared: its digits (NFKC, any Unicode decimal digit),
    separators removed, then leading zeros removed (no card number starts with 0, while a 0 in
    front keeps Luhn valid: 04111111111111111 is the test card 4111111111111111)."""
    text = unicodedata.normalize("NFKC", str(number))
    return "".join(str(unicodedata.decimal(c)) for c in text if c.isdecimal()).lstrip("0")


def test_cards(numbers):
    """TEST_CARD_NUMBERS as canonical numbers, for is_test_card."""
    return frozenset(filter(None, (canonical(n) for n in numbers)))


def is_test_card(number, canonical_test_cards):
    return canonical(number) in canonical_test_cards


def masked_text(text):
    """(text with each card number in it masked where it sits, the card numbers' digits), or
    (text, []) when it holds none. Text with a card is returned NFKC-normalised."""
    if len(text) < MIN_DIGITS:
        return text, []
    if not text.isascii():
        normal = unicodedata.normalize("NFKC", text)
        if not maybe_card(normal):
            return text, []
        text = normal
    elif not maybe_card(text):
        return text, []
    cards, pieces, last = [], [], 0
    for run in DIGIT_RUN.finditer(text):
        for start, end, digits in _cards_in_run(run):
            pieces += [text[last:start], mask(digits)]
            cards.append(digits)
            last = end
    if not cards:
        return text, []
    pieces.append(text[last:])
    return "".join(pieces), cards


def _cards_in_run(run):
    """(start, end, digits) of each card number in a run of digit groups: the whole run when it is
    one, else the longest Luhn-valid stretch of whole groups from each group on, left to right."""
    groups = list(GROUP.finditer(run.group()))
    offset, i, found = run.start(), 0, []
    while i < len(groups):
        stretch = _card_from(groups, i)
        if stretch is None:
            i += 1
            continue
        j, digits = stretch
        found.append((offset + groups[i].start(), offset + groups[j].end(), digits))
        i = j + 1
    return found


def _card_from(groups, i):
    """(last group, digits) of the longest card number starting at group i, or None."""
    digits, ends = "", []
    for j in range(i, len(groups)):
        digits += groups[j].group()
        if len(digits) > MAX_DIGITS:
            break
        if len(digits) >= MIN_DIGITS:
            ends.append((j, digits))
    for j, text in reversed(ends):
        ascii_digits = text if text.isascii() else "".join(str(unicodedata.decimal(c)) for c in text)
        if luhn_ok(ascii_digits):
            return j, ascii_digits
    return None


SMALL = 10 ** (MIN_DIGITS - 1)  # a number below this in size has too few digits for a card
EXACT_FLOAT = 2 ** 53  # a float this large no longer holds every integer: its digits are not the CRM's


def masked_number(value):
    """(the masked text a JSON number becomes, the card's digits or None), or None when it is no card:
    an int, or a float with nothing after the point, of 13 to 19 digits passing Luhn (a minus
    sign ignored). A float past 2^53 of that size is masked unchecked: its last digits are lost, its
    first ones would still be a card's."""
    size = abs(value)
    if not SMALL <= size < 10 ** MAX_DIGITS or (value.__class__ is float and not size.is_integer()):
        return None
    digits = str(int(size))
    if luhn_ok(digits):
        return mask(digits), digits
    if value.__class__ is float and size >= EXACT_FLOAT:
        return mask(digits), None
    return None


def scrubbed(value, cards, kept_keys=frozenset()):
    """value (a JSON object or list) without CVV keys, each card number in it masked where it sits
    and its digits appended to cards (once). Integers under kept_keys (the CRM's ids) are kept as
    they are. Most of an order's values are short strings and small numbers: a type and a length
    check keep them; a longer ASCII text only costs the cheap checks (this runs on every order)."""
    if value.__class__ is not dict:
        return [scrubbed(item, cards, kept_keys) if item.__class__ in CONTAINERS else _scrubbed_item(item, cards)
                for item in value]
    kept = {}
    for key, item in value.items():
        if is_cvv_key(key):
            continue
        cls = item.__class__
        if cls is str:
            if len(item) < 13 or (item.isascii() and not maybe_card(item)):
                kept[key] = item
                continue
        elif cls is int:
            if -10**12 < item < 10**12 or key in kept_keys:
                kept[key] = item
                continue
        elif cls in CONTAINERS:
            kept[key] = scrubbed(item, cards, kept_keys)
            continue
        elif cls is not float:  # None, bool
            kept[key] = item
            continue
        kept[key] = _scrubbed_item(item, cards)
    return kept


CONTAINERS = (dict, list)


def _scrubbed_item(item, cards):
    """A text or a number with its card numbers masked (their digits appended to cards, once)."""
    cls = item.__class__
    if cls is str:
        text, found = masked_text(item)
    elif (cls is int or cls is float) and not -SMALL < item < SMALL:
        masked = masked_number(item)
        if masked is None:
            return item
        text, found = masked[0], masked[1:] if masked[1] else ()
    else:
        return item
    for digits in found:
        if digits not in cards:
            cards.append(digits)
    return text
