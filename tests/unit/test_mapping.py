"""Mapping transforms, checked against exact expected items."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacgit._yaml import load_yaml
from stacgit.errors import ConfigError, MappingError
from stacgit.layout import compute_layout
from stacgit.mapping import compile_mapping


def mapping(tmp_path: Path, text: str):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return compile_mapping(load_yaml(p, "mappings/m.yaml"))


BASE = """
id: {path: name}
datetime: {path: when, format: ['%d/%m/%Y %H:%M', '%Y-%m-%d'], tz: Europe/Paris}
geometry: {point: [lon, lat]}
"""


def test_full_item(tmp_path):
    m = mapping(tmp_path, BASE + """
properties:
  code: {path: code, regex: '^(?P<value>[A-Z]+)-\\d+$'}
  kind: {path: code, regex: '-(\\d+)$', lookup: {'7': seven}, lookup_default: other}
  num: {path: code, regex: '-(\\d+)$', type: int}
  tags: {path: tags, split: ';'}
  tagline: {path: tags, split: ';', join: ' | '}
  height_m: {path: height_km, type: float, scale: 1000}
  first: {coalesce: [{path: missing}, {path: name}]}
  note: {path: nothing, optional: true}
  level: {path: nothing, default: 3}
  nested: {path: 'meta.items[1].v'}
defaults: {license_note: open}
assets:
  data: {href: 's3://b/{$collection}/{name}.tif', type: image/tiff, roles: [data], fields: {file:size: {path: size, type: int}}}
  extra: {href: 'https://x/{absent}', optional: true}
links: [{rel: via, href: 'https://src/{name}'}]
""")
    rec = {"name": "a1", "when": "24/02/2022 19:54", "lon": "2.5", "lat": 48, "code": "AB-7", "tags": "x; y",
           "height_km": "1.5", "size": "12", "meta": {"items": [{"v": 1}, {"v": 2}]}}
    item = m.render(rec, "coll", {"license_note": "ignored: mapping default wins only when empty"})
    assert item == {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [], "id": "a1", "collection": "coll",
        "geometry": {"type": "Point", "coordinates": [2.5, 48.0]}, "bbox": [2.5, 48.0, 2.5, 48.0],
        "properties": {"datetime": "2022-02-24T18:54:00Z", "code": "AB", "kind": "seven", "num": 7, "tags": ["x", "y"],
                       "tagline": "x | y", "height_m": 1500.0, "first": "a1", "level": 3, "nested": 2, "license_note": "open"},
        "assets": {"data": {"href": "s3://b/coll/a1.tif", "type": "image/tiff", "roles": ["data"], "file:size": 12}},
        "links": [{"rel": "via", "href": "https://src/a1"}],
    }


@pytest.mark.parametrize("rec,field,reason", [
    ({"name": "a", "when": "2022-13-01", "lon": 1, "lat": 1}, "datetime", "does not match format"),
    ({"name": "a", "when": "2022-01-01", "lon": 200, "lat": 1}, "geometry", "outside WGS84"),
    ({"when": "2022-01-01", "lon": 1, "lat": 1}, "id", "no value (path 'name')"),
    ({"name": "a", "when": "2022-01-01", "lat": 1}, "geometry", "some coordinates are missing"),
])
def test_record_errors_name_the_field(tmp_path, rec, field, reason):
    m = mapping(tmp_path, BASE)
    with pytest.raises(MappingError) as err:
        m.render(rec, "c")
    assert err.value.field.startswith(field) and reason in err.value.reason


def test_naive_time_without_tz_is_an_error(tmp_path):
    m = mapping(tmp_path, "id: {path: n}\ndatetime: {path: t, type: datetime}\ngeometry: {bbox: b}\n")
    with pytest.raises(MappingError, match="has no time zone"):
        m.render({"n": "x", "t": "2022-01-01T10:00:00", "b": [0, 0, 1, 1]}, "c")
    item = m.render({"n": "x", "t": "2022-01-01T10:00:00.250+02:00", "b": "0,0,1,1"}, "c")
    assert item["properties"]["datetime"] == "2022-01-01T08:00:00.25Z"
    assert item["geometry"]["coordinates"][0][2] == [1.0, 1.0]


def test_geometry_builders(tmp_path):
    m = mapping(tmp_path, "id: {path: n}\ndatetime: {path: t, format: epoch}\ngeometry: {wkt: w}\n")
    item = m.render({"n": "x", "t": 0, "w": "POLYGON((0 0, 2 0, 2 1, 0 0))"}, "c")
    assert item["bbox"] == [0.0, 0.0, 2.0, 1.0] and item["properties"]["datetime"] == "1970-01-01T00:00:00Z"
    with pytest.raises(MappingError, match="invalid WKT"):
        m.render({"n": "x", "t": 0, "w": "POLYGON((0 0"}, "c")


@pytest.mark.parametrize("text,message", [
    (BASE + "propertys: {}\n", "propertys: unknown key (did you mean 'properties'?)"),
    (BASE + "properties: {a: {path: x, typ: int}}\n", "properties.a.typ: unknown key (did you mean 'type'?)"),
    (BASE + "properties: {a: {path: x, type: integer}}\n", "properties.a.type: must be one of"),
    (BASE + "properties: {a: {path: x, value: 1}}\n", "properties.a: needs exactly one of"),
    (BASE + "properties: {a: {path: 'x[', type: int}}\n", "invalid JMESPath"),
    (BASE + "properties: {a: {path: x, regex: '('}}\n", "properties.a.regex: invalid regular expression"),
    ("id: {path: n}\ngeometry: {point: [a, b]}\n", "needs 'datetime'"),
])
def test_mapping_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        mapping(tmp_path, text)
    assert message in str(err.value) and str(err.value).startswith("mappings/m.yaml:")


def test_layout_is_bounded_and_deterministic():
    items = [(f"id{i:05d}", f"2022-0{1 + i % 3}-01T00:00:00.000000Z") for i in range(2500)]
    placement, nodes = compute_layout(items, ("year", "month"), 500)
    assert all(len(n.items) <= 500 for n in nodes)
    assert {p[:2] for p in placement.values()} == {("2022", "01"), ("2022", "02"), ("2022", "03")}
    assert all(len(p) == 3 and p[2].startswith("h") for p in placement.values())  # hash level below month
    assert compute_layout(list(reversed(items)), ("year", "month"), 500) == (placement, nodes)
    small, nodes = compute_layout(items[:10], ("year",), 500)
    assert set(small.values()) == {()} and len(nodes) == 1


@pytest.mark.parametrize(
    "fmt, message",
    [("'%Y-%m-%Q'", "'%Q' is not a strptime directive"), ("'Y-m-d'", "has no % directive"), ("'%Y%'", "ends with a lone '%'")],
)
def test_a_datetime_format_is_checked_when_the_mapping_loads(tmp_path, fmt, message):
    with pytest.raises(ConfigError, match=message) as err:
        mapping(tmp_path, f"id: {{path: n}}\ndatetime: {{path: t, format: {fmt}}}\ngeometry: {{wkt: w}}\n")
    assert "m.yaml:2: datetime.format" in str(err.value)


def test_json_transform_parses_json_text(tmp_path):
    """A CSV column holding JSON text: a bbox, a list of numbers, an object."""
    m = mapping(tmp_path, """
id: {path: n}
datetime: {path: t, type: datetime}
geometry: {bbox: {path: box, json: true}}
properties:
  bands: {path: bands, json: true}
  first_band: {path: bands, json: true, regex: '^\\[(\\d+)', type: int}
  meta: {path: meta, json: true, optional: true}
""")
    rec = {"n": "x", "t": "2022-01-01T00:00:00Z", "box": "[-74.49, 43.70, -73.22, 45.06]", "bands": "[4, 3, 2]", "meta": '{"a": [1, null]}'}
    item = m.render(rec, "c")
    assert item["bbox"] == [-74.49, 43.70, -73.22, 45.06]
    assert item["properties"] == {"datetime": "2022-01-01T00:00:00Z", "bands": [4, 3, 2], "first_band": 4, "meta": {"a": [1, None]}}
    assert m.render({**rec, "box": [0, 0, 1, 1], "meta": {"b": 1}}, "c")["properties"]["meta"] == {"b": 1}  # already structured
    with pytest.raises(MappingError) as err:
        m.render({**rec, "bands": "[4, 3,"}, "c")
    assert err.value.field == "properties.bands" and "is not JSON text" in err.value.reason


def test_a_record_failure_names_every_bad_field(tmp_path):
    m = mapping(tmp_path, BASE + """
properties:
  num: {path: num, type: int}
  ok: {path: name}
assets:
  data: {href: 'https://x/{file}'}
""")
    with pytest.raises(MappingError) as err:
        m.render({"name": "a", "when": "2022-13-01", "lon": 1, "lat": 1, "num": "many"}, "c")
    assert err.value.field == "datetime"
    assert "does not match format" in err.value.reason
    rest = err.value.reason.split("; ")[1:]
    assert [r.split(":")[0] for r in rest] == ["properties.num", "assets.data.href"]
    assert "no value for {file}" in rest[1]


@pytest.mark.parametrize("spec, rec", [
    ({"path": "a"}, {"a": "x"}),
    ({"path": "a", "json": True}, {"a": "[1, 2]"}),
    ({"path": "a", "regex": "(\\d+)", "type": "int"}, {"a": "n42"}),
    ({"path": "a", "split": ";"}, {"a": "x;y"}),
    ({"path": "a", "split": ";", "type": "int"}, {"a": "1;2"}),
    ({"path": "a", "split": ";", "lookup": {"1": 1.5, "2": 2.5}}, {"a": "1;2"}),
    ({"path": "a", "split": ";", "join": "|"}, {"a": "1;2"}),
    ({"path": "a", "type": "float", "scale": 2}, {"a": "1.5"}),
    ({"path": "a", "type": "int", "scale": 2, "offset": 1}, {"a": "3"}),
    ({"path": "a", "format": "%Y/%m/%d", "tz": "UTC"}, {"a": "2022/06/01"}),
    ({"path": "a", "type": "date", "format": "%Y/%m/%d"}, {"a": "2022/06/01"}),
    ({"value": 3, "scale": 2}, {}),
    ({"coalesce": [{"path": "b", "type": "int"}, {"value": 7}]}, {}),
    ({"template": "{a}-{a}"}, {"a": "x"}),
])
def test_the_column_type_of_every_transform_is_the_type_it_renders(tmp_path, spec, rec):
    """Rendering and GeoParquet typing read one table (``mapping.TRANSFORMS``)."""
    import yaml

    from stacgit.columns import value_type
    from stacgit.mapping import spec_type

    m = mapping(tmp_path, BASE + "properties:\n  f: " + yaml.safe_dump(spec, default_flow_style=True))
    value = m.render({"name": "a", "when": "2022-01-01", "lon": 1, "lat": 1, **rec}, "c")["properties"]["f"]
    expected = spec_type(spec)
    assert expected == "json" or value_type(value) == expected or (expected, value_type(value)) in (("datetime", "string"), ("float64", "int64"))
