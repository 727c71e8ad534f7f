"""Chapter 05 task sets: finance table QA, medical calculations and facts, IoT anomaly windows.

:func:`build_task_sets` regenerates the committed ``data/tasks`` files, byte for byte for a given seed, in
the item schema of :mod:`slmlab.tasks` (which loads and scores them). The IoT windows use real NASA
Shuttle readings bundled with ``river``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from slmlab.io import atomic_write_text
from slmlab.settings import project_root
from slmlab.spec import task_sets_dir
from slmlab.tasks import LETTERS, TaskItem

IOT_QUESTION = "Is any reading anomalous? Answer 'no' or 'yes, reading N'."

Row = tuple  # (context, question, answer, *choices) before it becomes a TaskItem


# --- generation helpers ------------------------------------------------------------------------------------
def fmt(value: Fraction | int, places: int = 0) -> str:
    """Round half up to ``places`` decimals with exact arithmetic; never "-0"."""
    value = Fraction(value)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    rounded = exact.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return str(rounded.copy_abs() if rounded == 0 else rounded)


def _unique(make: Callable[[random.Random, int], Row], rng: random.Random, n: int) -> list[Row]:
    """``n`` rows from ``make(rng, i)`` with distinct (context, question)."""
    rows, seen = [], set()
    while len(rows) < n:
        row = make(rng, len(rows))
        if row[:2] not in seen:
            seen.add(row[:2])
            rows.append(row)
    return rows


def _items(prefix: str, split: str, domain: str, rows: list[Row], rng: random.Random) -> list[TaskItem]:
    rows = list(rows)
    rng.shuffle(rows)
    return [
        TaskItem(f"{prefix}-{split}-{i:04d}", question, answer, domain, context, tuple(choices))
        for i, (context, question, answer, *choices) in enumerate(rows, 1)
    ]


# --- finance -----------------------------------------------------------------------------------------------
COMPANIES = (
    "Acme Corp",
    "Northwind Ltd",
    "Blue Harbor Inc",
    "Cedar Foods",
    "Orion Tools",
    "Pine Logistics",
    "Summit Health",
    "Vega Retail",
    "Delta Mining",
    "Helio Energy",
    "Kite Software",
    "Maple Textiles",
)
METRICS = ("Revenue", "Operating expenses", "Net income", "Total assets")
RATIOS = (
    ("Net income", "Revenue"),
    ("Operating expenses", "Revenue"),
    ("Revenue", "Total assets"),
    ("Net income", "Total assets"),
)


def _finance_table(rng: random.Random) -> tuple[list[int], dict[str, list[int]]]:
    """2-3 years of Revenue + 2-3 other metrics ($ millions), loosely consistent with each other."""
    first = rng.randint(2018, 2022)
    years = list(range(first, first + rng.choice((2, 3))))
    revenue = [rng.randint(200, 3000)]
    for _ in years[1:]:
        revenue.append(max(50, round(revenue[-1] * rng.uniform(0.85, 1.3))))
    opex = [round(r * rng.uniform(0.6, 0.9)) for r in revenue]
    table = {
        "Revenue": revenue,
        "Operating expenses": opex,
        "Net income": [max(1, round((r - o) * rng.uniform(0.4, 0.8))) for r, o in zip(revenue, opex)],
        "Total assets": [round(r * rng.uniform(0.8, 2.5)) for r in revenue],
    }
    shown = ["Revenue", *sorted(rng.sample(METRICS[1:], rng.choice((2, 3))), key=METRICS.index)]
    return years, {metric: table[metric] for metric in shown}


def _finance_item(rng: random.Random, i: int) -> Row:
    years, table = _finance_table(rng)
    lines = [f"{rng.choice(COMPANIES)} ($ millions)", " | ".join(["Metric", *map(str, years)])]
    lines += [" | ".join([metric, *map(str, values)]) for metric, values in table.items()]
    kind, metric = ("lookup", "difference", "percent", "ratio")[i % 4], rng.choice(list(table))
    a, b = sorted(rng.sample(range(len(years)), 2))
    old, new = table[metric][a], table[metric][b]
    if kind == "lookup":
        question, answer = f"What was {metric} in {years[b]}, in $ millions?", str(new)
    elif kind == "difference":
        question, answer = f"By how much did {metric} change from {years[a]} to {years[b]}, in $ millions?", str(new - old)
    elif kind == "percent":
        question = f"What was the percentage change in {metric} from {years[a]} to {years[b]}? Round to 1 decimal."
        answer = fmt(Fraction(new - old, old) * 100, 1) + "%"
    else:
        top, bottom = rng.choice([pair for pair in RATIOS if set(pair) <= set(table)])
        question = f"What was the ratio of {top} to {bottom} in {years[b]}? Round to 2 decimals."
        answer = fmt(Fraction(table[top][b], table[bottom][b]), 2)
    return "\n".join(lines), question, answer


# --- medical -----------------------------------------------------------------------------------------------
# (category, answer, question templates, own distractors; () = draw from the category's answers). Hand-checked.
FACTS = (
    ("vitamin", "Vitamin C", ("Which vitamin deficiency causes scurvy?", "Scurvy results from a lack of which vitamin?"), ()),
    (
        "vitamin",
        "Vitamin D",
        (
            "Deficiency of which vitamin causes rickets in children?",
            "Rickets in children is mainly caused by a lack of which vitamin?",
        ),
        (),
    ),
    (
        "vitamin",
        "Vitamin B1 (thiamine)",
        ("Which vitamin deficiency causes beriberi?", "Beriberi results from a lack of which vitamin?"),
        (),
    ),
    (
        "vitamin",
        "Vitamin B3 (niacin)",
        ("Which vitamin deficiency causes pellagra?", "Pellagra results from a lack of which vitamin?"),
        (),
    ),
    (
        "vitamin",
        "Vitamin A",
        ("Deficiency of which vitamin causes night blindness?", "Night blindness is an early sign of a lack of which vitamin?"),
        (),
    ),
    (
        "vitamin",
        "Vitamin B12",
        ("Intrinsic factor is needed to absorb which vitamin?", "Pernicious anemia is a deficiency of which vitamin?"),
        (),
    ),
    (
        "vitamin",
        "Vitamin K",
        (
            "Which vitamin does the liver need to make several clotting factors?",
            "A lack of which vitamin causes bleeding from impaired blood clotting?",
        ),
        (),
    ),
    ("organ", "Pancreas", ("Which organ produces insulin?", "Insulin is made by beta cells in which organ?"), ()),
    ("organ", "Liver", ("Which organ produces bile?", "Bile is made by which organ?"), ()),
    ("organ", "Gallbladder", ("Which organ stores and concentrates bile?", "Where is bile stored between meals?"), ()),
    (
        "organ",
        "Kidney",
        ("Which organ filters the blood to make urine?", "Nephrons are the functional units of which organ?"),
        (),
    ),
    (
        "organ",
        "Lungs",
        ("In which organ does gas exchange between air and blood take place?", "Alveoli are found in which organ?"),
        (),
    ),
    (
        "organ",
        "Thyroid gland",
        ("Which gland makes the hormone thyroxine (T4)?", "Which gland in the neck produces the hormones T3 and T4?"),
        (),
    ),
    ("organ", "Heart", ("Which organ pumps blood around the body?", "The myocardium is the muscle of which organ?"), ()),
    ("bone", "Femur", ("What is the longest bone in the human body?", "Which bone runs from the hip to the knee?"), ()),
    (
        "bone",
        "Stapes",
        ("What is the smallest bone in the human body?", "Which middle-ear bone is the smallest bone in the body?"),
        (),
    ),
    ("bone", "Humerus", ("Which bone is in the upper arm?", "Which bone runs from the shoulder to the elbow?"), ()),
    ("bone", "Patella", ("What is the anatomical name of the kneecap?", "Which bone is the kneecap?"), ()),
    ("bone", "Clavicle", ("What is the anatomical name of the collarbone?", "Which bone is the collarbone?"), ()),
    ("bone", "Scapula", ("What is the anatomical name of the shoulder blade?", "Which bone is the shoulder blade?"), ()),
    (
        "normal",
        "60-100 beats per minute",
        ("What is the normal resting heart rate of an adult?", "A healthy adult's resting pulse is normally in which range?"),
        ("30-50 beats per minute", "110-150 beats per minute", "150-200 beats per minute"),
    ),
    (
        "normal",
        "12-20 breaths per minute",
        (
            "What is the normal resting respiratory rate of an adult?",
            "How many breaths per minute are normal for a resting adult?",
        ),
        ("4-8 breaths per minute", "30-40 breaths per minute", "40-60 breaths per minute"),
    ),
    (
        "normal",
        "About 37 °C",
        ("What is normal human core body temperature?", "Approximately what is the core body temperature of a healthy adult?"),
        ("About 33 °C", "About 40 °C", "About 42 °C"),
    ),
    (
        "normal",
        "70-99 mg/dL",
        ("What is a normal fasting blood glucose level in adults?", "Which fasting plasma glucose range is normal for an adult?"),
        ("20-40 mg/dL", "140-199 mg/dL", "250-350 mg/dL"),
    ),
    (
        "normal",
        "7.35-7.45",
        ("What is the normal pH range of arterial blood?", "Normal arterial blood pH lies in which range?"),
        ("6.85-6.95", "7.05-7.15", "7.65-7.75"),
    ),
    (
        "normal",
        "About 5 litres",
        ("About how much blood does an average adult have?", "Roughly what is the total blood volume of an average adult?"),
        ("About 1 litre", "About 12 litres", "About 20 litres"),
    ),
    (
        "normal",
        "135-145 mmol/L",
        ("What is the normal serum sodium range?", "Normal blood sodium concentration lies in which range?"),
        ("110-120 mmol/L", "155-165 mmol/L", "175-185 mmol/L"),
    ),
    (
        "blood",
        "Red blood cells",
        ("Which blood cells carry oxygen to the tissues?", "Hemoglobin is found in which blood cells?"),
        (),
    ),
    (
        "blood",
        "Platelets",
        ("Which blood components form a plug to stop bleeding?", "Which cell fragments help blood to clot?"),
        (),
    ),
    (
        "blood",
        "Neutrophils",
        (
            "What is the most common type of white blood cell in adult blood?",
            "Which white blood cells are the most numerous in a healthy adult?",
        ),
        ("Basophils", "Eosinophils", "Monocytes"),
    ),
    (
        "blood",
        "B lymphocytes",
        (
            "Which white blood cells mature into antibody-producing plasma cells?",
            "Plasma cells that secrete antibodies develop from which cells?",
        ),
        ("T lymphocytes", "Neutrophils", "Eosinophils"),
    ),
)


def _calculation(rng: random.Random, i: int) -> Row:
    """One computed item; the kind cycles BMI, weight-based dose, MAP, infusion rate, glucose conversion."""
    kind = i % 5
    if kind == 0:
        weight, height = rng.randint(45, 130), rng.randint(150, 200)
        return (
            f"Adult patient: weight {weight} kg, height {height} cm.",
            "What is the patient's BMI in kg/m², rounded to 1 decimal?",
            fmt(Fraction(weight) / Fraction(height, 100) ** 2, 1),
        )
    if kind == 1:
        per_kg, weight = rng.choice(("2", "5", "7.5", "10", "12.5", "15", "20", "25")), rng.randint(8, 90)
        return (
            f"Prescribed dose: {per_kg} mg/kg. Patient weight: {weight} kg.",
            "What single dose in mg should be given? Round to a whole number.",
            fmt(Fraction(per_kg) * weight),
        )
    if kind == 2:
        systolic = rng.randint(90, 180)
        diastolic = rng.randint(50, min(110, systolic - 25))
        return (
            f"Blood pressure: {systolic}/{diastolic} mmHg.",
            "What is the mean arterial pressure in mmHg, using MAP = (SBP + 2 × DBP) / 3? Round to a whole number.",
            fmt(Fraction(systolic + 2 * diastolic, 3)),
        )
    if kind == 3:
        volume, hours = rng.choice((100, 250, 500, 1000, 1500, 2000)), rng.choice((1, 2, 3, 4, 5, 6, 8, 10, 12, 24))
        return (
            f"Order: {volume} mL of normal saline over {hours} hours by pump.",
            "What pump rate in mL/h is needed? Round to a whole number.",
            fmt(Fraction(volume, hours)),
        )
    glucose = rng.randint(40, 400)
    return (
        f"Blood glucose: {glucose} mg/dL.",
        "What is this in mmol/L (divide by 18)? Round to 1 decimal.",
        fmt(Fraction(glucose, 18), 1),
    )


def _fact_rows(facts: list[tuple], rng: random.Random) -> list[Row]:
    """Every template of every fact as a multiple-choice row: the answer plus 3 distractors, shuffled."""
    rows = []
    for category, answer, templates, own in facts:
        pool = own or sorted({fact[1] for fact in FACTS if fact[0] == category and fact[1] != answer})
        for template in templates:
            choices = [answer, *rng.sample(pool, 3)]
            rng.shuffle(choices)
            rows.append(("", template, LETTERS[choices.index(answer)], *choices))
    return rows


def _medical(seed: int, n_train: int, n_test: int, mc_share: float = 0.4) -> dict[str, list[TaskItem]]:
    """Facts are split, not just items: a test fact's questions never appear in train. Calculations fill up."""
    rng = random.Random(f"medical:{seed}")
    facts = list(FACTS)
    rng.shuffle(facts)
    held_out = round(len(facts) * n_test / (n_train + n_test))
    choice_rows = {}
    for split, split_facts, size in (("train", facts[held_out:], n_train), ("test", facts[:held_out], n_test)):
        rows = _fact_rows(split_facts, rng)
        choice_rows[split] = rng.sample(rows, min(len(rows), round(size * mc_share)))
    n_calc = n_train - len(choice_rows["train"])
    calculations = _unique(_calculation, rng, n_calc + n_test - len(choice_rows["test"]))
    return {
        "medical_train": _items("med", "train", "medical", choice_rows["train"] + calculations[:n_calc], rng),
        "medical_test": _items("med", "test", "medical", choice_rows["test"] + calculations[n_calc:], rng),
    }


# --- IoT ---------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def shuttle_rows() -> tuple[tuple[tuple[int, ...], int], ...]:
    """All 49,097 (features f1..f9, label) rows of ``river.datasets.Shuttle`` (label 1 = anomaly), read once."""
    from river import datasets

    return tuple((tuple(int(x[f"f{k}"]) for k in range(1, 10)), int(y)) for x, y in datasets.Shuttle())


@lru_cache(maxsize=1)
def _normal_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-feature mean and standard deviation over the normal rows."""
    columns = list(zip(*(x for x, y in shuttle_rows() if y == 0)))
    means = tuple(sum(column) / len(column) for column in columns)
    return means, tuple((sum((v - m) ** 2 for v in c) / len(c)) ** 0.5 for c, m in zip(columns, means))


def _z(row: tuple[int, ...], k: int) -> float:
    means, stds = _normal_stats()
    return abs(row[k] - means[k]) / stds[k]


@lru_cache(maxsize=1)
def iot_features() -> tuple[str, ...]:
    """The 3 features shown per reading: the largest gap in mean |z| (z against the normal rows) between
    anomalous and normal rows. On Shuttle: f1, f7, f9."""
    rows = shuttle_rows()

    def gap(k: int) -> float:
        anomalous, normal = ([_z(x, k) for x, y in rows if y == label] for label in (1, 0))
        return sum(anomalous) / len(anomalous) - sum(normal) / len(normal)

    return tuple(f"f{k + 1}" for k in sorted(sorted(range(9), key=gap, reverse=True)[:3]))


def _shown_columns() -> list[int]:
    return [int(name[1:]) - 1 for name in iot_features()]


@dataclass(frozen=True)
class IotWindow:
    rows: tuple[int, ...]  # Shuttle row indices, in reading order
    anomaly: int | None  # 1-based reading number of the anomalous row; None when all are normal

    @property
    def answer(self) -> str:
        return "no" if self.anomaly is None else f"yes, reading {self.anomaly}"

    def context(self) -> str:
        data = shuttle_rows()
        return "\n".join(
            f"reading {i}: " + " ".join(f"f{k + 1}={data[row][0][k]}" for k in _shown_columns())
            for i, row in enumerate(self.rows, 1)
        )


def iot_windows(
    seed: int = 0, n_train: int = 100, n_test: int = 50, size: int = 5, anomaly_fraction: float = 0.4
) -> dict[str, list[IotWindow]]:
    """Train / test windows: a run of consecutive clearly normal rows (|z| ≤ 2 on every shown feature); in
    an anomalous window one reading is swapped for a real anomaly that stands out there (max |z| ≥ 3).
    No Shuttle row is used twice, so train and test share no reading."""
    data, columns = shuttle_rows(), _shown_columns()
    normal = [i for i, (x, y) in enumerate(data) if y == 0 and max(_z(x, k) for k in columns) <= 2]
    anomalous = [i for i, (x, y) in enumerate(data) if y == 1 and max(_z(x, k) for k in columns) >= 3]
    rng, used, out = random.Random(f"iot:{seed}"), set(), {}
    for split, n in (("train", n_train), ("test", n_test)):
        flags = [True] * round(n * anomaly_fraction) + [False] * (n - round(n * anomaly_fraction))
        rng.shuffle(flags)
        out[split] = []
        for flag in flags:
            start = rng.randrange(len(normal) - size)
            while used.intersection(normal[start : start + size]):
                start = rng.randrange(len(normal) - size)
            window, position = normal[start : start + size], rng.randrange(size) if flag else None
            if position is not None:
                window[position] = rng.choice([row for row in anomalous if row not in used])
            used.update(window)
            out[split].append(IotWindow(tuple(window), None if position is None else position + 1))
    return out


# --- writing -----------------------------------------------------------------------------------------------
def build_items(seed: int = 0, n_train: int = 100, n_test: int = 50) -> dict[str, list[TaskItem]]:
    """All generated items by registry name; pure (same arguments, same items)."""
    rng = random.Random(f"finance:{seed}")
    finance = _unique(_finance_item, rng, n_train + n_test)
    items = {
        "finance_train": _items("fin", "train", "finance", finance[:n_train], rng),
        "finance_test": _items("fin", "test", "finance", finance[n_train:], rng),
        **_medical(seed, n_train, n_test),
    }
    for split, windows in iot_windows(seed, n_train, n_test).items():
        items[f"iot_{split}"] = [
            TaskItem(f"iot-{split}-{i:04d}", IOT_QUESTION, window.answer, "iot", window.context())
            for i, window in enumerate(windows, 1)
        ]
    return items


def dump_tasks(items: list[TaskItem]) -> str:
    """JSONL text of items, one object per line, keys in schema order, empty optional fields left out."""
    return "".join(json.dumps(item.to_dict(), ensure_ascii=False) + "\n" for item in items)


def build_task_sets(out_dir: str | Path | None = None, seed: int = 0, n_train: int = 100, n_test: int = 50) -> dict[str, Path]:
    """Write ``{finance,medical,iot}_{train,test}.jsonl`` (default: the checkout's ``data/tasks``) atomically;
    byte for byte the same for a given seed and sizes."""
    folder = Path(out_dir) if out_dir is not None else task_sets_dir(project_root())
    return {
        name: atomic_write_text(folder / f"{name}.jsonl", dump_tasks(items))
        for name, items in build_items(seed, n_train, n_test).items()
    }


# --- transfer split ----------------------------------------------------------------------------------------
# The transfer split asks again what the adaptation (train) items' feedback teaches, in other words: the same
# tables and patient data with the question rephrased, the same facts in a third wording, the same sensor windows
# read in another order. The generalization split is the test split above (new tables, facts and windows).
FACT_REWORDINGS = {  # a third wording per fact, used only by the transfer split
    "Vitamin C": "A sailor with bleeding gums and scurvy lacks which vitamin?",
    "Vitamin D": "Soft, bowed bones in a child with rickets point to a shortage of which vitamin?",
    "Vitamin B1 (thiamine)": "Beriberi is linked to too little of which vitamin?",
    "Vitamin B3 (niacin)": "Pellagra (dermatitis, diarrhea, dementia) is due to a shortage of which vitamin?",
    "Vitamin A": "Poor vision in dim light is an early sign of too little of which vitamin?",
    "Vitamin B12": "Which vitamin cannot be absorbed without intrinsic factor from the stomach?",
    "Vitamin K": "Clotting factors II, VII, IX and X depend on which vitamin?",
    "Pancreas": "The islets of Langerhans, which release insulin, lie in which organ?",
    "Liver": "Bile is produced by which organ?",
    "Gallbladder": "Which small organ under the liver keeps bile until a meal?",
    "Kidney": "Urine is produced by which organ filtering the blood?",
    "Lungs": "Oxygen passes from air into the blood in which organ?",
    "Thyroid gland": "Thyroxine is produced by which gland?",
    "Heart": "Which muscular organ keeps the blood circulating?",
    "Femur": "The thigh bone, the longest in the body, is called what?",
    "Stapes": "The tiniest bone of the human skeleton, in the middle ear, is which?",
    "Humerus": "The long bone between shoulder and elbow is called what?",
    "Patella": "The kneecap is which bone?",
    "Clavicle": "The collarbone is which bone?",
    "Scapula": "The shoulder blade is which bone?",
    "60-100 beats per minute": "In which range is an adult's normal heart rate at rest?",
    "12-20 breaths per minute": "In which range is the normal breathing rate of an adult at rest?",
    "About 37 °C": "What is the usual core temperature of a healthy person?",
    "70-99 mg/dL": "In which range should an adult's fasting blood sugar normally be?",
    "7.35-7.45": "In which range does the pH of normal arterial blood lie?",
    "About 5 litres": "How much blood is in an average adult's body, roughly?",
    "135-145 mmol/L": "In which range is a normal blood sodium level?",
    "Red blood cells": "Which blood cells contain hemoglobin and deliver oxygen?",
    "Platelets": "Which cell fragments in blood plug a bleeding vessel?",
    "Neutrophils": "Which white blood cells are the most common in an adult's blood?",
    "B lymphocytes": "Antibody-making plasma cells come from which white blood cells?",
}
FINANCE_REWORDINGS = (  # (pattern of a train question, the same question in other words)
    (r"What was (.+) in (\d{4}), in \$ millions\?", r"How much was \1 in \2? Give $ millions."),
    (
        r"By how much did (.+) change from (\d{4}) to (\d{4}), in \$ millions\?",
        r"What was \1 in \3 minus \1 in \2, in $ millions?",
    ),
    (
        r"What was the percentage change in (.+) from (\d{4}) to (\d{4})\? Round to 1 decimal\.",
        r"By what percent did \1 change between \2 and \3? Round to 1 decimal.",
    ),
    (
        r"What was the ratio of (.+) to (.+) in (\d{4})\? Round to 2 decimals\.",
        r"In \3, what was \1 divided by \2? Round to 2 decimals.",
    ),
)
CALCULATION_REWORDINGS = {  # a medical calculation's train question -> the same question in other words
    "What is the patient's BMI in kg/m², rounded to 1 decimal?": (
        "Calculate this patient's body mass index (BMI) in kg/m². Round to 1 decimal."
    ),
    "What single dose in mg should be given? Round to a whole number.": (
        "How many mg is one dose for this patient? Round to a whole number."
    ),
    "What is the mean arterial pressure in mmHg, using MAP = (SBP + 2 × DBP) / 3? Round to a whole number.": (
        "Using MAP = (SBP + 2 × DBP) / 3, what is this patient's mean arterial pressure in mmHg? Round to a whole number."
    ),
    "What pump rate in mL/h is needed? Round to a whole number.": (
        "At how many mL per hour should the pump run? Round to a whole number."
    ),
    "What is this in mmol/L (divide by 18)? Round to 1 decimal.": (
        "Convert this glucose value to mmol/L (divide by 18). Round to 1 decimal."
    ),
}


def _reworded_finance(item: TaskItem) -> TaskItem:
    for pattern, rewording in FINANCE_REWORDINGS:
        if re.fullmatch(pattern, item.question):
            return replace(item, question=re.sub(pattern, rewording, item.question))
    raise ValueError(f"no rewording for finance question {item.question!r}")


def _reworded_medical(item: TaskItem, rng: random.Random) -> TaskItem:
    """A calculation keeps its patient data; a fact is asked in its third wording, choices shuffled anew."""
    if not item.choices:
        return replace(item, question=CALCULATION_REWORDINGS[item.question])
    answer = item.choices[LETTERS.index(item.answer)]
    choices = list(item.choices)
    rng.shuffle(choices)
    return replace(item, question=FACT_REWORDINGS[answer], choices=tuple(choices), answer=LETTERS[choices.index(answer)])


def _reordered_window(item: TaskItem, rng: random.Random) -> TaskItem:
    """The same five readings in another order (a rotation), renumbered; the anomaly moves with its reading."""
    readings = [line.split(": ", 1)[1] for line in item.context.splitlines()]
    shift = rng.randrange(1, len(readings))
    order = readings[shift:] + readings[:shift]
    answer = item.answer
    if item.answer != "no":
        anomalous = readings[int(item.answer.rsplit(" ", 1)[1]) - 1]
        answer = f"yes, reading {order.index(anomalous) + 1}"
    context = "\n".join(f"reading {i}: {reading}" for i, reading in enumerate(order, 1))
    return replace(item, context=context, answer=answer)


def _transfer_sample(train: list[TaskItem], n: int, rng: random.Random, share_mc: float | None = None) -> list[TaskItem]:
    """``n`` adaptation items to ask again; for medical, ``share_mc`` of them multiple-choice facts."""
    if share_mc is None:
        return rng.sample(train, min(n, len(train)))
    by_fact = {i.choices[LETTERS.index(i.answer)]: i for i in train if i.choices}  # one item per fact
    facts, calculations = list(by_fact.values()), [i for i in train if not i.choices]
    n_facts = min(len(facts), round(n * share_mc))
    return rng.sample(facts, n_facts) + rng.sample(calculations, min(len(calculations), n - n_facts))


def build_transfer_items(
    seed: int = 0, n_train: int = 100, n_test: int = 50, items: dict[str, list[TaskItem]] | None = None
) -> dict[str, list[TaskItem]]:
    """``{domain}_transfer``: ``n_test`` adaptation items of each domain asked again in other words (see
    :data:`FACT_REWORDINGS`); pure, and it leaves :func:`build_items` and its files unchanged."""
    items = items or build_items(seed, n_train, n_test)
    rng = random.Random(f"transfer:{seed}")
    reworded = {
        "finance": [_reworded_finance(i) for i in _transfer_sample(items["finance_train"], n_test, rng)],
        "medical": [_reworded_medical(i, rng) for i in _transfer_sample(items["medical_train"], n_test, rng, 0.4)],
        "iot": [_reordered_window(i, rng) for i in _transfer_sample(items["iot_train"], n_test, rng)],
    }
    for rows in reworded.values():
        rng.shuffle(rows)
    prefixes = {"finance": "fin", "medical": "med", "iot": "iot"}
    return {
        f"{domain}_transfer": [replace(item, id=f"{prefixes[domain]}-transfer-{i:04d}") for i, item in enumerate(rows, 1)]
        for domain, rows in reworded.items()
    }


def build_transfer_sets(
    out_dir: str | Path | None = None, seed: int = 0, n_train: int = 100, n_test: int = 50
) -> dict[str, Path]:
    """Write ``{finance,medical,iot}_transfer.jsonl`` next to the other task sets, byte for byte deterministic."""
    folder = Path(out_dir) if out_dir is not None else task_sets_dir(project_root())
    return {
        name: atomic_write_text(folder / f"{name}.jsonl", dump_tasks(items))
        for name, items in build_transfer_items(seed, n_train, n_test).items()
    }


def transfer_path(domain: str) -> Path:
    """The committed transfer split of a domain."""
    return task_sets_dir(project_root(), f"{domain}_transfer.jsonl")
