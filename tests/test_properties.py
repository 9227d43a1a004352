"""Properties over generated input: nothing crashes the worker, valid rows round-trip."""

from __future__ import annotations

import json

import pytest
from helpers import invoice_csv, invoice_row, read_results
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from worker.kinds import KINDS as kinds
from worker.state.files import FINAL_STATES

# The pipeline under test keeps running between examples, and dramatiq's consumer
# threads draw their backoff jitter from the random module: Hypothesis sees its state
# move during a draw and blames the strategy. Nothing here uses the random module.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

PROPERTY = hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(data=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_any_bytes_dropped_end_final_with_a_result(pipeline, settings, store, data):
    # Given whatever bytes, under a fresh name
    count = store.one("SELECT count(*) AS n FROM files")["n"]
    name = f"drop{count:05d}.csv"
    pipeline.drop(name, data)
    # Then the file ends in a final state, answered, and the worker is still alive
    files = pipeline.wait_final(count + 1, timeout=30)
    file = files[-1]
    assert file.state in FINAL_STATES
    stem = file.result_name
    if file.state == "processed":
        suffix = kinds.get(file.kind).result_suffix  # JSON batch requests answer in JSON
        assert (settings.outbox / f"{stem}{suffix}").exists()
    else:
        doc = json.loads((settings.outbox / f"{stem}.error.json").read_text())
        assert doc["file"] == name and doc["code"]


safe_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40
).map(str.strip)
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "amount": st.integers(1, 9_999_999_999).map(str),
            "currency": st.sampled_from(["USD", "rwf", "JOD", "eur"]),
            "language": st.sampled_from(["en", "AR", "fr", "rw"]),
            "customer_name": safe_text,
            "order_description": st.text(
                alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00\r"),
                max_size=150,
            ).map(str.strip),
        }
    ),
    min_size=1,
    max_size=30,
)


@PROPERTY
@given(rows=rows_strategy, delimiter=st.sampled_from([",", ";"]))
def test_a_valid_generated_file_round_trips_into_exactly_its_rows(
    pipeline, settings, store, rows, delimiter
):
    count = store.one("SELECT count(*) AS n FROM files")["n"]
    full = [invoice_row(count * 100 + i, **row) for i, row in enumerate(rows)]
    pipeline.drop(f"gen{count:05d}.csv", invoice_csv(full, delimiter=delimiter, newline="\r\n"))
    file = pipeline.wait_final(count + 1, timeout=30)[-1]
    assert (file.state, file.created) == ("processed", len(rows))
    results = read_results(settings.outbox / f"{file.result_name}.results.csv")
    assert [r["status"] for r in results] == ["CREATED"] * len(rows)
    stored = store.all(
        "SELECT merchant_reference, amount, currency, language, customer_name, order_description"
        " FROM invoices WHERE file_id = ? ORDER BY line_number",
        (file.id,),
    )
    expected = [
        (
            r["merchant_reference"],
            int(r["amount"]),
            r["currency"].upper(),
            r["language"].lower(),
            r["customer_name"] or None,
            r["order_description"].replace("\r\n", "\n") or None,
        )
        for r in full
    ]
    assert [tuple(s) for s in stored] == expected


@PROPERTY
@given(rows=rows_strategy, delimiter=st.sampled_from([",", ";"]))
def test_a_valid_generated_file_sent_twice_is_exists_for_every_row_the_second_time(
    pipeline, settings, store, rows, delimiter
):
    # Given a valid generated file, processed
    count = store.one("SELECT count(*) AS n FROM files")["n"]
    full = [invoice_row(count * 100 + i, **row) for i, row in enumerate(rows)]
    pipeline.drop(f"twice{count:05d}.csv", invoice_csv(full, delimiter=delimiter, newline="\r\n"))
    first = pipeline.wait_final(count + 1, timeout=30)[-1]
    assert (first.state, first.created) == ("processed", len(rows))
    made = store.one("SELECT count(*) AS n FROM invoices")["n"]
    # When the same rows come again, written the other way (other bytes, same rows)
    other = ";" if delimiter == "," else ","
    pipeline.drop(f"again{count:05d}.csv", invoice_csv(full, delimiter=other, newline="\n"))
    second = pipeline.wait_final(count + 2, timeout=30)[-1]
    # Then every row is EXISTS with the first run's invoice, and nothing is created
    assert (second.state, second.created, second.existing) == ("processed", 0, len(rows))
    before = read_results(settings.outbox / f"{first.result_name}.results.csv")
    after = read_results(settings.outbox / f"{second.result_name}.results.csv")
    assert [r["status"] for r in after] == ["EXISTS"] * len(rows)
    assert [{**r, "status": "CREATED"} for r in after] == before
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == made
