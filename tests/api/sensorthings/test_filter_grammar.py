"""The $filter grammar, one test per production (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.sensorthings.errors import StaBadRequest
from api.sensorthings.filter_grammar import Binary, Call, Literal, Negate, Not, Path, parse_filter


def test_or_expr_is_left_associative_and_binds_loosest() -> None:
    assert parse_filter("a eq 1 or b eq 2 and c eq 3") == Binary(
        "or", Binary("eq", Path(("a",)), Literal("number", 1.0)),
        Binary("and", Binary("eq", Path(("b",)), Literal("number", 2.0)),
               Binary("eq", Path(("c",)), Literal("number", 3.0))),
    )


def test_and_expr_chains() -> None:
    node = parse_filter("a eq 1 and b eq 2 and c eq 3")
    assert isinstance(node, Binary) and node.op == "and" and isinstance(node.left, Binary) and node.left.op == "and"


def test_not_expr_negates_a_comparison_or_a_parenthesised_condition() -> None:
    assert parse_filter("not a eq 1") == Not(Binary("eq", Path(("a",)), Literal("number", 1.0)))
    assert parse_filter("not (a eq 1)") == Not(Binary("eq", Path(("a",)), Literal("number", 1.0)))


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "ge", "lt", "le"])
def test_comparison_takes_each_operator(op: str) -> None:
    assert parse_filter(f"result {op} 5") == Binary(op, Path(("result",)), Literal("number", 5.0))


def test_comparisons_do_not_chain() -> None:
    with pytest.raises(StaBadRequest, match="do not chain"):
        parse_filter("a lt 1 lt 2")


def test_additive_binds_looser_than_multiplicative() -> None:
    assert parse_filter("a add 2 mul 3 eq 7").left == Binary(  # type: ignore[union-attr]
        "add", Path(("a",)), Binary("mul", Literal("number", 2.0), Literal("number", 3.0))
    )


def test_multiplicative_takes_mul_div_mod() -> None:
    node = parse_filter("a mul 2 div 3 mod 4 eq 1")
    assert isinstance(node, Binary) and isinstance(node.left, Binary) and node.left.op == "mod"


def test_unary_minus_folds_into_a_number_and_negates_a_path() -> None:
    assert parse_filter("a eq -2.5").right == Literal("number", -2.5)  # type: ignore[union-attr]
    assert parse_filter("-a eq 2").left == Negate(Path(("a",)))  # type: ignore[union-attr]


def test_primary_parentheses_override_precedence() -> None:
    node = parse_filter("(a eq 1 or b eq 2) and c eq 3")
    assert isinstance(node, Binary) and node.op == "and" and isinstance(node.left, Binary) and node.left.op == "or"


def test_call_takes_zero_one_or_several_arguments() -> None:
    assert parse_filter("now() gt 1").left == Call("now", ())  # type: ignore[union-attr]
    assert parse_filter("startswith(name, 'PM')") == Call("startswith", (Path(("name",)), Literal("text", "PM")))


def test_path_follows_slashes_and_dotted_function_names_are_calls() -> None:
    assert parse_filter("Thing/properties/city eq 'x'").left == Path(("Thing", "properties", "city"))  # type: ignore[union-attr]
    assert isinstance(parse_filter("geo.distance(location, geography'POINT(1 2)') lt 1").left, Call)  # type: ignore[union-attr]


def test_literal_strings_double_their_quotes() -> None:
    assert parse_filter("name eq 'Da''an'").right == Literal("text", "Da'an")  # type: ignore[union-attr]


def test_literal_numbers_take_decimals_and_exponents() -> None:
    assert parse_filter("a eq 1.5e2").right == Literal("number", 150.0)  # type: ignore[union-attr]


def test_literal_true_false_null() -> None:
    assert parse_filter("a eq true").right == Literal("bool", True)  # type: ignore[union-attr]
    assert parse_filter("a eq null").right == Literal("null", None)  # type: ignore[union-attr]


def test_literal_datetime_with_offset_is_utc() -> None:
    node = parse_filter("phenomenonTime ge 2024-05-01T08:00:00+08:00")
    assert node.right == Literal("time", datetime(2024, 5, 1, 0, 0, tzinfo=UTC))  # type: ignore[union-attr]


def test_literal_interval_is_two_instants() -> None:
    node = parse_filter("phenomenonTime eq 2024-05-01T00:00:00Z/2024-05-02T00:00:00Z")
    assert node.right == Literal("interval", (datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)))  # type: ignore[union-attr]


def test_literal_duration() -> None:
    assert parse_filter("a eq duration'P1DT2H'").right == Literal("duration", timedelta(days=1, hours=2))  # type: ignore[union-attr]


def test_literal_geography_point_and_polygon() -> None:
    assert parse_filter("a eq geography'POINT(121.5 25.0)'").right == Literal("point", (121.5, 25.0))  # type: ignore[union-attr]
    poly = parse_filter("a eq geography'POLYGON((0 0, 1 0, 1 1, 0 0))'").right  # type: ignore[union-attr]
    assert poly == Literal("polygon", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)))


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("name eq", "expected a value"),
    ("name eq 'open", "unexpected character"),
    ("(name eq 'a'", r"expected '\)'"),
    ("name eq 'a' 'b'", "unexpected"),
    ("name ~ 'a'", "unexpected character"),
    ("t ge 2024-05-01T00:00:00", "unexpected"),
    ("a eq geography'LINESTRING(0 0, 1 1)'", "not supported"),
    ("a eq geography'POLYGON((0 0, 1 0, 1 1))'", "must end where it starts"),
    ("a eq duration'P1Y'", "not an ISO 8601 duration"),
    ("Datastreams/any(d: d/name eq 'x')", "unexpected"),
    ("a in ('x', 'y')", "unexpected"),
    ("(" * 50 + "a eq 1" + ")" * 50, "deeper"),
])
def test_what_the_grammar_refuses_is_a_sentence(text: str, reason: str) -> None:
    with pytest.raises(StaBadRequest, match=reason):
        parse_filter(text)
