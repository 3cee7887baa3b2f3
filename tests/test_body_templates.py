"""Body templates (the contract's toolkit): nested JSON and XML built from Export Names, read
back by real parsers (json, ElementTree) for any value hypothesis makes; the template sandbox
refusing escapes, huge loops and huge outputs; template errors naming the line."""
import json
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.body_templates import (MAX_BODY_CHARS, BodyProblem, BodyTemplate, Flag, Number, TemplateProblem,
                                     as_flag, as_number, build_body, json_body, nested, xml_body)

# --- nested JSON ---------------------------------------------------------------------------------


def test_dotted_and_indexed_export_names_nest_and_formats_type_the_values():
    pairs = [("lead.contact.email", "jane@example.com"), ("lead.phones[0]", "5552013344"),
             ("lead.phones[1]", "5550000000"), ("lead.age", as_number("42")), ("lead.price", as_number("49.95")),
             ("lead.opt_in", as_flag("1")), ("lead.zip", "07001"), ("source", "web")]
    assert json.loads(json_body(pairs)) == {
        "lead": {"contact": {"email": "jane@example.com"}, "phones": ["5552013344", "5550000000"],
                 "age": 42, "price": 49.95, "opt_in": True, "zip": "07001"},
        "source": "web"}


@pytest.mark.parametrize("text, value", [("1,234.50", 1234.5), ("$7", 7), ("", None), ("abc", "abc"), ("1e999", "1e999")])
def test_the_number_format_makes_a_json_number_and_leaves_what_is_no_number_a_string(text, value):
    assert json.loads(json_body([("n", as_number(text))])) == {"n": value}


@pytest.mark.parametrize("pairs, problem", [
    ([("lead", "x"), ("lead.email", "y")], "Export Name 'lead.email' conflicts with another Export Name"),
    ([("lead.email", "y"), ("lead", "x")], "Export Name 'lead' conflicts with another Export Name"),
    ([("phones[1]", "x")], "phones[0] is not mapped, but a later index of phones is"),
    ([("a..b", "x")], "Export Name 'a..b': not a path"),
    ([("a[1000]", "x")], "Export Name 'a[1000]': index 1000 is over 999"),
])
def test_names_that_cannot_nest_are_named_in_the_problem(pairs, problem):
    with pytest.raises(BodyProblem) as exc:
        json_body(pairs)
    assert str(exc.value).startswith(problem)


KEYS = st.text(st.characters(blacklist_characters=".[]", blacklist_categories=("Cs",)), min_size=1, max_size=8)
VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.tuples(KEYS, KEYS), VALUES, min_size=1, max_size=6), st.lists(VALUES, max_size=4))
def test_any_value_round_trips_through_the_json_builder_and_json(tree, items):
    parents = {parent for parent, _ in tree}
    pairs = [(f"{a}.{b}", v) for (a, b), v in tree.items()]
    pairs += [(f"items[{i}]", v) for i, v in enumerate(items)]
    if "items" in parents:
        return  # 'items' as both an object and a list is a conflict, tested above
    parsed = json.loads(json_body(pairs))
    for (a, b), v in tree.items():
        assert parsed[a][b] == v
    assert parsed.get("items", []) == items


@settings(max_examples=100, deadline=None)
@given(st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False), st.booleans())
def test_numbers_and_booleans_round_trip_as_json_numbers_and_booleans(number, flag):
    parsed = json.loads(json_body([("n", as_number(repr(number))), ("f", as_flag(str(flag)))]))
    assert parsed == {"n": number, "f": flag}


# --- XML -----------------------------------------------------------------------------------------

def test_xml_has_the_root_nested_elements_and_attributes_and_repeats():
    body = xml_body([("@version", "2"), ("lead.@id", "7"), ("lead.contact.email", "a&b<c>"),
                     ("lead.phone[0]", "1"), ("lead.phone[1]", "2"), ("lead.opt_in", as_flag("yes"))], "request")
    root = ET.fromstring(body.encode())
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert (root.tag, root.get("version")) == ("request", "2")
    assert root.find("lead").get("id") == "7"
    assert root.find("lead/contact/email").text == "a&b<c>"
    assert [p.text for p in root.findall("lead/phone")] == ["1", "2"]
    assert root.find("lead/opt_in").text == "true"


@pytest.mark.parametrize("pairs, root, problem", [
    ([("a", "1")], "1lead", "XML root element '1lead' is not an XML element name"),
    ([("a b", "1")], "lead", "Export Name 'a b': element 'a b' is not an XML element name"),
    ([("lead", "x"), ("lead.email", "y")], "lead", "Export Name 'lead.email' conflicts"),
    ([("lead.@a b", "x")], "lead", "Export Name 'lead.@a b': attribute 'a b' is not an XML element name"),
])
def test_xml_problems_name_the_export_name(pairs, root, problem):
    with pytest.raises(BodyProblem) as exc:
        xml_body(pairs, root)
    assert str(exc.value).startswith(problem)


XML_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(
    chr(c) for c in range(32) if c not in (9, 10, 13)) + "\ufffe\uffff"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(XML_TEXT, XML_TEXT, st.lists(XML_TEXT, max_size=3))
def test_any_text_round_trips_through_the_xml_builder_and_elementtree(text, attribute, repeated):
    pairs = [("lead.note", text), ("lead.@source", attribute)] + [(f"lead.item[{i}]", v) for i, v in enumerate(repeated)]
    root = ET.fromstring(xml_body(pairs).encode("utf-8"))
    assert (root.find("lead/note").text or "") == text
    assert root.find("lead").get("source") == attribute
    assert [(e.text or "") for e in root.findall("lead/item")] == repeated


def test_characters_xml_cannot_carry_become_the_replacement_character():
    root = ET.fromstring(xml_body([("a", "x\x00y\x1bz")]).encode())
    assert root.find("a").text == "x\ufffdy\ufffdz"


# --- full templates ------------------------------------------------------------------------------

def test_a_json_template_escapes_each_value_inside_its_quotes():
    template = BodyTemplate('{"lead": {"email": "{{ lead.email }}", "age": {{ age }}, "ok": {{ ok }}},\n'
                            ' "note": "{{ values["first-name"] }}", "all": {{ lead | json }}}')
    body = template.render([("lead.email", 'x"}, "admin": true, "y": "'), ("age", as_number("42")),
                            ("ok", as_flag("no")), ("first-name", "Jane\nDoe")])
    assert json.loads(body) == {"lead": {"email": 'x"}, "admin": true, "y": "', "age": 42, "ok": False},
                                "note": "Jane\nDoe", "all": {"email": 'x"}, "admin": true, "y": "'}}


def test_an_xml_template_escapes_for_xml():
    body = BodyTemplate('<lead name="{{ name }}">{{ name }}</lead>', "application/xml").render([("name", '<a & "b">')])
    root = ET.fromstring(body)
    assert root.text == root.get("name") == '<a & "b">'


def test_a_form_template_url_encodes():
    assert BodyTemplate("email={{ email }}&x=1", "application/x-www-form-urlencoded").render(
        [("email", "a+b&c=d@x")]) == "email=a%2Bb%26c%3Dd%40x&x=1"


@pytest.mark.parametrize("source, line, words", [
    ("{\n  \"a\": {{ a }\n}", 2, "unexpected '}'"),
    ("line one\n{% for x in %}", 2, "Expected an expression"),
    ("{% if a %}\n{% endfor %}", 2, "Encountered unknown tag 'endfor'"),
])
def test_a_template_that_does_not_compile_names_its_line(source, line, words):
    with pytest.raises(TemplateProblem) as exc:
        BodyTemplate(source)
    assert exc.value.line == line and words in str(exc.value) and str(exc.value).startswith(f"line {line}: ")


def test_a_render_error_names_its_line():
    with pytest.raises(TemplateProblem) as exc:
        BodyTemplate('{\n"a": "{{ a }}",\n"b": "{{ missing }}"\n}').render([("a", "1")])
    assert str(exc.value) == "line 3: 'missing' is undefined"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ range.__globals__ }}",
    "{{ values.__class__.__init__.__globals__['os'] }}",
    "{{ lead.update.__globals__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__ }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ ''|attr('__class__') }}",
])
def test_sandbox_escapes_are_refused(source):
    with pytest.raises(TemplateProblem):
        BodyTemplate(source).render([("lead.email", "x")])


@pytest.mark.parametrize("source, words", [
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "longer than"),
    ("{% set r = range(10000)|list %}{% for i in r %}{% for j in r %}{% for k in r %}{% endfor %}{% endfor %}"
     "{% endfor %}", "longer than"),
    ("{% for i in range(100000) %}{% endfor %}", "range is at most"),
    ("{% for i in range(100000000) %}{% endfor %}", "not allowed"),
    ("{{ 'a' * 1000000000 }}", "over"),
    ("{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}", "over"),
    ("{{ range(10000)|join('x' * 100) }}", "over"),
    ("{{ 'a'|replace('a', 'a' * 1000)|replace('a', 'a' * 1000) }}", "over"),
    ("{{ 'a'.ljust(999999999) }}", "not allowed"),
    ("{{ '{:>999999999}'.format(1) }}", "not allowed"),
    ("{{ '%999999999d' % 1 }}", "not allowed"),
    ("{{ 9 ** 99999999 }}", "not allowed"),
])
def test_huge_loops_and_huge_outputs_are_stopped_within_bounds(source, words):
    template = BodyTemplate(source)
    template.seconds = 0.5
    started = time.monotonic()
    with pytest.raises(TemplateProblem) as exc:
        template.render([])
    assert words in str(exc.value)
    assert time.monotonic() - started < 3


def test_output_bound_is_the_body_limit():
    assert len(BodyTemplate("{{ 'x' * %d }}" % MAX_BODY_CHARS).render([])) == MAX_BODY_CHARS


def test_build_body_gives_the_content_type_of_each_format():
    pairs = [("a.b", "1")]
    assert build_body("nested_json", pairs) == ('{"a": {"b": "1"}}', "application/json")
    assert build_body("json", pairs) == ('{"a.b": "1"}', "application/json")
    assert build_body("form", pairs) == ("a.b=1", "application/x-www-form-urlencoded")
    assert build_body("xml", pairs, xml_root="r")[1] == "application/xml"
    assert build_body("template", pairs, template="<x>{{ a.b }}</x>", content_type="application/xml") == (
        "<x>1</x>", "application/xml")


def test_typed_values_stay_text_everywhere_else():
    assert isinstance(as_number("42"), str) and as_number("42") == "42" and isinstance(as_number("42"), Number)
    assert as_flag("yes") == "true" and isinstance(as_flag("yes"), Flag)
    assert nested([("a", as_flag("maybe"))]) == {"a": "maybe"}
