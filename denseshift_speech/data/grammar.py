"""A small English grammar of spoken requests (commands, numbers, times, dates).

Used by :mod:`denseshift_speech.data.synth` as the text source of the synthetic ASR
corpus.  Everything is generated from a ``random.Random`` so the text is a pure function
of the seed.  All output is upper-case words made of ``A-Z`` and the apostrophe, spelled
out the way LibriSpeech transcripts are (numbers in words, no punctuation).
"""
from __future__ import annotations

import random

ONES = ["ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
TEENS = ["TEN", "ELEVEN", "TWELVE", "THIRTEEN", "FOURTEEN", "FIFTEEN", "SIXTEEN",
         "SEVENTEEN", "EIGHTEEN", "NINETEEN"]
TENS = ["TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY"]
ORDINALS = ["FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH", "SEVENTH", "EIGHTH",
            "NINTH", "TENTH", "ELEVENTH", "TWELFTH", "THIRTEENTH", "FOURTEENTH",
            "FIFTEENTH", "SIXTEENTH", "SEVENTEENTH", "EIGHTEENTH", "NINETEENTH", "TWENTIETH"]
MONTHS = ["JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST",
          "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER"]
DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
ROOMS = ["KITCHEN", "BEDROOM", "BATHROOM", "LIVING ROOM", "GARAGE", "OFFICE", "HALLWAY",
         "GARDEN", "DINING ROOM", "BASEMENT"]
DEVICES = ["LIGHTS", "HEATING", "FAN", "RADIO", "TELEVISION", "OVEN", "LAMP", "MUSIC",
           "COFFEE MACHINE", "WASHING MACHINE"]
PEOPLE = ["MY MOTHER", "MY FATHER", "MY SISTER", "MY BROTHER", "THE DOCTOR", "ANNA", "DAVID",
          "MARIA", "JOHN", "SARAH", "PETER", "EMMA", "THOMAS", "LUCY", "THE OFFICE"]
CITIES = ["LONDON", "PARIS", "BERLIN", "MADRID", "TORONTO", "BOSTON", "CHICAGO", "DUBLIN",
          "SYDNEY", "TOKYO", "ROME", "VIENNA"]
COLORS = ["RED", "BLUE", "GREEN", "YELLOW", "WHITE", "ORANGE", "PURPLE", "WARM"]
FOODS = ["MILK", "BREAD", "EGGS", "APPLES", "BUTTER", "CHEESE", "RICE", "COFFEE", "TEA",
         "TOMATOES", "POTATOES", "CHICKEN", "ORANGES", "SUGAR"]
GENRES = ["JAZZ", "CLASSICAL MUSIC", "ROCK", "THE NEWS", "SOME PIANO", "THE RADIO",
          "RELAXING MUSIC", "A PODCAST"]
EVENTS = ["A MEETING", "DINNER", "LUNCH", "A DENTIST APPOINTMENT", "A PHONE CALL",
          "THE TRAIN", "A PARTY", "A FOOTBALL GAME"]
UNITS = ["MINUTES", "HOURS", "SECONDS"]
DAYPARTS = ["IN THE MORNING", "IN THE AFTERNOON", "IN THE EVENING", "AT NIGHT"]
WHEN = ["TODAY", "TOMORROW", "TONIGHT", "THIS WEEKEND", "NEXT WEEK", "ON " ]


def number(rng: random.Random, lo: int = 1, hi: int = 99) -> str:
    return spell(rng.randint(lo, hi))


def spell(n: int) -> str:
    if n < 0 or n > 999:
        raise ValueError(n)
    if n == 0:
        return "ZERO"
    words = []
    if n >= 100:
        words += [ONES[n // 100 - 1], "HUNDRED"]
        n %= 100
        if n:
            words.append("AND")
    if n >= 20:
        words.append(TENS[n // 10 - 2])
        if n % 10:
            words.append(ONES[n % 10 - 1])
    elif n >= 10:
        words.append(TEENS[n - 10])
    elif n > 0:
        words.append(ONES[n - 1])
    return " ".join(words)


def clock(rng: random.Random) -> str:
    hour = spell(rng.randint(1, 12))
    minute = rng.choice([0, 0, 5, 10, 15, 20, 30, 30, 45, 50, rng.randint(1, 59)])
    if minute == 0:
        t = hour + rng.choice([" O'CLOCK", ""])
    elif minute == 15 and rng.random() < 0.5:
        t = "QUARTER PAST " + hour
    elif minute == 30 and rng.random() < 0.5:
        t = "HALF PAST " + hour
    elif minute < 10:
        t = f"{hour} OH {spell(minute)}"
    else:
        t = f"{hour} {spell(minute)}"
    if rng.random() < 0.4:
        t += " " + rng.choice(DAYPARTS)
    return t


def date(rng: random.Random) -> str:
    day = rng.choice(ORDINALS + ["TWENTY FIRST", "TWENTY SECOND", "TWENTY THIRD",
                                 "TWENTY FOURTH", "TWENTY FIFTH", "THIRTIETH"])
    month = rng.choice(MONTHS)
    return rng.choice([f"THE {day} OF {month}", f"{month} {day}"])


def when(rng: random.Random) -> str:
    w = rng.choice(WHEN)
    if w == "ON ":
        return "ON " + rng.choice(DAYS + [date(rng)])
    return w


def _c(rng, *opts):
    return rng.choice(opts)


TEMPLATES = [
    lambda r: f"SET AN ALARM FOR {clock(r)}",
    lambda r: f"WAKE ME UP AT {clock(r)} {when(r)}",
    lambda r: f"SET A TIMER FOR {number(r, 1, 60)} {r.choice(UNITS)}",
    lambda r: f"TURN THE {r.choice(DEVICES)} {_c(r, 'ON', 'OFF')} IN THE {r.choice(ROOMS)}",
    lambda r: f"TURN {_c(r, 'ON', 'OFF')} THE {r.choice(DEVICES)}",
    lambda r: f"PLEASE SWITCH {_c(r, 'ON', 'OFF')} THE {r.choice(DEVICES)} IN THE {r.choice(ROOMS)}",
    lambda r: f"MAKE THE {r.choice(ROOMS)} LIGHTS {r.choice(COLORS)}",
    lambda r: f"DIM THE LIGHTS IN THE {r.choice(ROOMS)} TO {number(r, 1, 99)} PERCENT",
    lambda r: f"SET THE TEMPERATURE TO {number(r, 15, 30)} DEGREES",
    lambda r: f"{_c(r, 'INCREASE', 'DECREASE', 'TURN UP', 'TURN DOWN')} THE VOLUME BY {number(r, 1, 20)}",
    lambda r: f"PLAY {r.choice(GENRES)} IN THE {r.choice(ROOMS)}",
    lambda r: f"PLAY {r.choice(GENRES)} {_c(r, 'PLEASE', 'FOR ME', 'AGAIN', 'LOUDER')}",
    lambda r: f"CALL {r.choice(PEOPLE)} {_c(r, 'NOW', 'LATER', 'AT ' + clock(r), 'BACK')}",
    lambda r: f"SEND A MESSAGE TO {r.choice(PEOPLE)} SAYING I WILL BE {_c(r, 'LATE', 'HOME SOON', 'THERE AT ' + clock(r))}",
    lambda r: f"REMIND ME TO CALL {r.choice(PEOPLE)} {when(r)}",
    lambda r: f"REMIND ME ABOUT {r.choice(EVENTS)} AT {clock(r)}",
    lambda r: f"ADD {r.choice(EVENTS)} TO MY CALENDAR FOR {when(r)}",
    lambda r: f"WHAT IS THE WEATHER {_c(r, 'LIKE', 'GOING TO BE')} IN {r.choice(CITIES)} {when(r)}",
    lambda r: f"WILL IT RAIN IN {r.choice(CITIES)} {when(r)}",
    lambda r: f"WHAT TIME IS IT IN {r.choice(CITIES)}",
    lambda r: f"HOW LONG DOES IT TAKE TO DRIVE TO {r.choice(CITIES)}",
    lambda r: f"BOOK A TABLE FOR {number(r, 2, 12)} PEOPLE AT {clock(r)}",
    lambda r: f"ADD {number(r, 1, 12)} {r.choice(FOODS)} TO THE SHOPPING LIST",
    lambda r: f"ADD {r.choice(FOODS)} AND {r.choice(FOODS)} TO MY SHOPPING LIST",
    lambda r: f"DO WE HAVE ANY {r.choice(FOODS)} LEFT",
    lambda r: f"WHAT IS {number(r, 1, 99)} {_c(r, 'PLUS', 'MINUS', 'TIMES')} {number(r, 1, 99)}",
    lambda r: f"HOW MANY DAYS ARE THERE UNTIL {date(r)}",
    lambda r: f"WHAT DAY OF THE WEEK IS {date(r)}",
    lambda r: f"MY BIRTHDAY IS ON {date(r)}",
    lambda r: f"THE TRAIN TO {r.choice(CITIES)} LEAVES AT {clock(r)}",
    lambda r: f"I NEED A TAXI TO THE AIRPORT AT {clock(r)} {when(r)}",
    lambda r: f"OPEN THE {_c(r, 'GARAGE DOOR', 'FRONT DOOR', 'WINDOWS', 'CURTAINS')}",
    lambda r: f"CLOSE THE {_c(r, 'GARAGE DOOR', 'FRONT DOOR', 'WINDOWS', 'CURTAINS')} {when(r)}",
    lambda r: f"LOCK THE {_c(r, 'FRONT DOOR', 'BACK DOOR', 'GARAGE DOOR', 'CAR')}",
    lambda r: f"IS THE {r.choice(DEVICES)} IN THE {r.choice(ROOMS)} {_c(r, 'ON', 'OFF')}",
    lambda r: f"START THE {_c(r, 'OVEN', 'WASHING MACHINE', 'COFFEE MACHINE', 'DISHWASHER')} AT {clock(r)}",
    lambda r: f"STOP THE {_c(r, 'MUSIC', 'TIMER', 'ALARM', 'RADIO')}",
    lambda r: f"CANCEL MY {_c(r, 'ALARM', 'MEETING', 'APPOINTMENT', 'TIMER')} FOR {when(r)}",
    lambda r: f"MOVE {r.choice(EVENTS)} FROM {r.choice(DAYS)} TO {r.choice(DAYS)}",
    lambda r: f"READ ME THE NEWS FROM {r.choice(CITIES)}",
    lambda r: "SKIP TO THE NEXT SONG",
    lambda r: f"GO BACK {number(r, 1, 30)} SECONDS",
    lambda r: f"TELL {r.choice(PEOPLE)} THAT DINNER IS READY",
    lambda r: f"HOW FAR IS {r.choice(CITIES)} FROM {r.choice(CITIES)}",
    lambda r: f"WHAT IS ON MY CALENDAR {when(r)}",
    lambda r: f"I WILL BE HOME AT {clock(r)}",
    lambda r: f"ORDER {number(r, 1, 9)} {_c(r, 'PIZZAS', 'COFFEES', 'SANDWICHES', 'SALADS')} FOR {clock(r)}",
]


def sentence(rng: random.Random) -> str:
    """One upper-case sentence, spaces normalised."""
    text = rng.choice(TEMPLATES)(rng)
    return " ".join(text.split())


def vocabulary() -> set:
    """Every word the grammar can produce (approximately: sampled exhaustively enough)."""
    rng = random.Random(1234)
    vocab = set()
    for _ in range(20000):
        vocab.update(sentence(rng).split())
    return vocab
