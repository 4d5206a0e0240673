"""``traffic_pipeline.db``: the stored ROI is read in every shape older versions wrote; the
backend writes one, ``[[x, y], ...]``."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from traffic_pipeline.db import _polygon, load_video

SQUARE = [[0.0, 0.0], [95.0, 0.0], [95.0, 63.0], [0.0, 63.0]]
AS_DICTS = [{"x": x, "y": y} for x, y in SQUARE]


@pytest.mark.parametrize(
    "stored",
    [
        SQUARE,  # what the backend writes (upload's roi, calibration's roi_polygon)
        AS_DICTS,
        {"points": SQUARE},
        {"polygon": AS_DICTS},
        {"roi_polygon": SQUARE},
    ],
)
def test_every_stored_roi_shape_reads_as_a_list_of_points(stored):
    assert _polygon(stored) == SQUARE


@pytest.mark.parametrize("stored", [None, [], {}, {"points": []}])
def test_no_roi(stored):
    assert _polygon(stored) is None


def test_an_old_row_is_still_read(engine, add_video):
    vid = add_video(frames=2)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE videos SET roi = CAST(:roi AS JSONB) WHERE id = :v"),
            {"roi": json.dumps({"points": AS_DICTS}), "v": vid},
        )
    assert load_video(vid, engine=engine).roi_polygon == SQUARE
