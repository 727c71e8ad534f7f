"""Plain Python values as JSON that keeps their types, for the two processes of a check task: a tuple stays a tuple,
a set a set, a dict may have any plain keys, and a non-finite float survives. Only exact built-in types pass.

Written by hand because neither json (no tuples, sets or non-string keys) nor pickle (runs code when it loads)
fits: the checker must rebuild exactly what the candidate returned, and nothing it reads may execute.
Encoded form: None, bool, int, str, finite float and list as themselves; {"tuple": [...]}, {"set": [...]},
{"frozenset": [...]} (items in a fixed order), {"dict": [[key, value], ...]}, {"float": "nan" | "inf" | "-inf"}.
"""

import json
import math

MAX_DEPTH = 100  # deeper values are refused (a self-referencing list, or a value built to exhaust the stack)
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class NotPlainValue(TypeError):
    """A value of a type the codec does not carry (a subclass, a generator, an object of the program's own)."""


def canonical(data):
    """The one text of an encoded value or call: equal texts mean equal values of equal types."""
    return json.dumps(data, sort_keys=True, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def encode(value, depth=0):
    """The JSON form of ``value``; NotPlainValue names the first type it cannot carry."""
    if depth > MAX_DEPTH:
        raise NotPlainValue(f"a value nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if kind is list:
        return [encode(item, depth + 1) for item in value]
    if kind is tuple:
        return {"tuple": [encode(item, depth + 1) for item in value]}
    if kind is set or kind is frozenset:  # iteration order follows string hashes, which differ per process: sort
        items = sorted((encode(item, depth + 1) for item in value), key=canonical)
        return {kind.__name__: items}
    if kind is dict:
        return {"dict": [[encode(key, depth + 1), encode(item, depth + 1)] for key, item in value.items()]}
    raise NotPlainValue(f"returned a {kind.__name__}, not a plain value")


def decode(data, depth=0):
    """The value an encoded form stands for; ValueError for anything :func:`encode` cannot have written."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(item, depth + 1) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise ValueError("not an encoded value")
    ((tag, body),) = data.items()
    return _decode_tagged(tag, body, depth)


def _decode_tagged(tag, body, depth):
    if tag == "float" and body in NON_FINITE:
        return NON_FINITE[body]
    if type(body) is not list:
        raise ValueError(f"the body of {tag!r} must be a list")
    if tag == "dict":
        return _decode_dict(body, depth)
    if tag not in ("tuple", "set", "frozenset"):
        raise ValueError(f"unknown tag {tag!r}")
    items = [decode(item, depth + 1) for item in body]
    if tag == "tuple":
        return tuple(items)
    try:
        return set(items) if tag == "set" else frozenset(items)
    except TypeError as exc:
        raise ValueError(f"an item of a {tag} is not hashable") from exc


def _decode_dict(body, depth):
    pairs = {}
    for pair in body:
        if type(pair) is not list or len(pair) != 2:
            raise ValueError("a dict item must be a [key, value] pair")
        key = decode(pair[0], depth + 1)
        try:
            pairs[key] = decode(pair[1], depth + 1)
        except TypeError as exc:
            raise ValueError("a dict key is not hashable") from exc
    return pairs


def encode_call(args, kwargs):
    """One call's arguments: {"args": [...], "kwargs": {name: value}}."""
    return {"args": [encode(arg) for arg in args], "kwargs": {name: encode(value) for name, value in kwargs.items()}}


def decode_call(data):
    """(args, kwargs) of an encoded call."""
    if (
        type(data) is not dict
        or set(data) != {"args", "kwargs"}
        or type(data["args"]) is not list
        or type(data["kwargs"]) is not dict
    ):
        raise ValueError("a call must be {'args': [...], 'kwargs': {...}}")
    return [decode(arg) for arg in data["args"]], {str(name): decode(value) for name, value in data["kwargs"].items()}
