"""CSV downloads keep catalogue text as text in a spreadsheet."""

import io

import pandas as pd

from recsys.export import csv_bytes


def test_formula_like_text_is_neutralised_and_numbers_stay_numbers():
    frame = pd.DataFrame(
        {
            "title": ['=HYPERLINK("http://x")', "+1 cable", "-minus", "@sum", "Plain lamp"],
            "score": [-1.5, 2.0, 0.0, 1.0, 3.0],
        }
    )
    back = pd.read_csv(io.BytesIO(csv_bytes(frame)))
    assert back["title"].tolist() == ['\'=HYPERLINK("http://x")', "'+1 cable", "'-minus", "'@sum", "Plain lamp"]
    assert back["score"].tolist() == [-1.5, 2.0, 0.0, 1.0, 3.0]
