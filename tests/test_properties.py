"""Property-based tests: the preset parser and the event-stream parser never crash on any input;
they accept what is valid and reject everything else with their own one-line error."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    SCHEMA_VERSION,
    ProtocolError,
    decode,
    decode_event,
    encode,
    make_event,
)
from engine.orchestrate import presets
from engine.orchestrate.presets import PresetError

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-10, 10_000),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["small", "big", "synthetic", "transfer", "scratch"]),
)
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
keys = st.one_of(
    st.sampled_from(
        [
            "epochs",
            "lr",
            "size",
            "mode",
            "dataset",
            "mechanism",
            "trials",
            "seed",
            "batch_size",
            "sample_hz",
            "name",
            "match",
            "prune",
        ]
    ),
    st.text(min_size=1, max_size=8),
)
tables = st.dictionaries(keys, toml_values, max_size=4)
documents = st.dictionaries(
    st.sampled_from(["preset", "matrix", "settings", "override", "other"]),
    st.one_of(tables, st.lists(tables, max_size=2), toml_scalars),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_preset_parser_accepts_or_explains_in_one_line(doc):
    try:
        preset = presets.parse(doc, Path("fuzz.toml"))
    except PresetError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml")
    else:
        for planned in preset.plan():
            assert planned.spec.epochs >= 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_preset_loader_never_crashes_on_arbitrary_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("p") / "x.toml"
    path.write_text(text)
    try:
        presets.load(str(path))
    except PresetError as exc:
        assert "\n" not in str(exc)


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.dictionaries(st.sampled_from(["v", "type", "run", "t", "x"]), json_values).map(
            lambda d: json.dumps(d).encode()
        ),
        # a valid envelope of a known type, with fields that may or may not fit it
        st.builds(
            lambda kind, fields: json.dumps({"v": SCHEMA_VERSION, "type": kind, "run": "r", "t": 1.0, **fields}),
            st.sampled_from(sorted(EVENT_TYPES)),
            st.dictionaries(st.sampled_from(["phase", "status", "domain", "epoch", "message", "domains"]), json_values),
        ).map(str.encode),
    )
)
def test_event_parser_accepts_only_valid_events(line):
    try:
        event = decode_event(line)
    except ProtocolError:
        return
    assert isinstance(event, EVENT_CLASSES) and event.v == SCHEMA_VERSION and isinstance(event.run, str)
    assert decode(line)["type"] == event.type  # a typed event always has a valid envelope


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(EVENT_TYPES)),
    st.text(min_size=1, max_size=20),
    st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in ("v", "type", "run", "t")), json_values, max_size=4
    ),
)
def test_every_event_round_trips_through_one_line(kind, run_id, fields):
    # the wire format the worker writes (plain dicts), read back as the raw envelope on purpose:
    # arbitrary fields rarely make a valid typed event
    event = make_event(kind, run_id, **fields)
    line = encode(event)
    assert line.endswith("\n") and line.count("\n") == 1
    assert decode(line) == json.loads(line) == event
