"""The strict loader: what PyYAML would silently accept is refused, with line:col."""

from __future__ import annotations

from carepath.source.dumper import dump_yaml
from carepath.source.loader import MAX_NODES, load_source


def codes(text: bytes) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.col) for d in load_source("t.yaml", text=text).diagnostics]


def test_duplicate_key_is_refused_and_first_value_kept() -> None:
    src = load_source("t.yaml", text=b"a: 1\nb:\n  c: 2\n  c: 3\n")
    assert [(d.code, d.line, d.col) for d in src.diagnostics] == [("CP104", 4, 3)]
    assert "first defined at line 3" in src.diagnostics[0].message
    assert src.data == {"a": 1, "b": {"c": 2}}


def test_yaml_12_scalars_keep_their_look() -> None:
    data = load_source("t.yaml", text=b"on: x\nno: no\nt: 18:00\nd: 2026-03-02\nn: 08\nb: true\nz: ~\n").data
    assert data == {"on": "x", "no": "no", "t": "18:00", "d": "2026-03-02", "n": 8, "b": True, "z": None}


def test_alias_bomb_stops_early() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    src = load_source("t.yaml", text="\n".join(lines).encode())
    assert [d.code for d in src.diagnostics] == ["CP106"]
    assert str(MAX_NODES) in src.diagnostics[0].message


def test_tabs_utf8_and_syntax_are_positioned() -> None:
    assert codes(b"a:\n  b: 1\n\tc: 2\n") == [("CP102", 3, 1)]
    assert codes(b"a: ok\nb: caf\xe9\n") == [("CP101", 2, 7)]
    assert codes(b"a: [1, 2\nb: 3\n")[0][:2] == ("CP103", 2)


def test_not_a_single_mapping() -> None:
    assert codes(b"") == [("CP107", 1, 1)]
    assert codes(b"- a\n- b\n") == [("CP107", 1, 1)]
    assert codes(b"a: 1\n---\nb: 2\n")[0][:2] == ("CP107", 3)


def test_tags_merge_keys_and_non_text_keys_are_refused() -> None:
    assert codes(b"a: !!python/object:os.system x\n")[0][0] == "CP108"
    assert codes(b"base: &b {x: 1}\nc:\n  <<: *b\n")[0][:2] == ("CP108", 3)
    assert codes(b"1: a\n")[0][0] == "CP108"


def test_dumper_round_trips_strings_that_look_like_other_types() -> None:
    data = {"a": "0o17", "b": "18:00", "c": "on", "d": "true", "e": "", "f": "08", "g": None, "h": "1e3"}
    assert load_source("t.yaml", text=dump_yaml(data).encode()).data == data
