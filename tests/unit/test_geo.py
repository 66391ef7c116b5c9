"""Geometry helpers shared by the build, lint, patches, exports and discovery."""

from __future__ import annotations

import pytest

from stacgit.geo import bbox_2d, geometry_problem


def test_bbox_2d_reads_2d_and_3d_boxes():
    assert bbox_2d([1, 2, 3, 4]) == (1, 2, 3, 4)
    assert bbox_2d([1, 2, -10, 3, 4, 10]) == (1, 2, 3, 4)  # [w, s, zmin, e, n, zmax]
    for bad in (None, [], [1, 2, 3], [1, 2, 3, "4"], [1, 2, 3, float("nan")], [True, 2, 3, 4]):
        with pytest.raises(ValueError):
            bbox_2d(bad)


def test_discovery_filters_3d_extents_by_their_2d_range():
    from stacgit.discover import _overlaps_bbox

    box = [10, 0, -5, 20, 5, 500]  # a lidar collection's 3D extent: x 10..20, y 0..5
    assert _overlaps_bbox(box, [15, 1, 16, 2])  # read as e=5, n=500 (box[-2], box[-1]) it did not
    assert not _overlaps_bbox(box, [15, 100, 16, 200])
    assert _overlaps_bbox(None, [0, 0, 1, 1])


@pytest.mark.parametrize("geom, reason", [
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0.5]]]}, "must be closed"),
    ({"type": "Point", "coordinates": [0, 0, 0, 0, 0]}, "2 or 3 numbers"),
    ({"type": "Point", "coordinates": ["0", "0"]}, "finite numbers"),
    ({"type": "Point", "coordinates": [181, 0]}, "outside longitude"),
    ({"type": "Circle", "coordinates": [0, 0]}, "not a GeoJSON geometry"),
])
def test_geometry_problems_are_named(geom, reason):
    assert reason in geometry_problem(geom)
