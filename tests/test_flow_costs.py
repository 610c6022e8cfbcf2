"""A wct flow run costs only what it must (flows/runtime.py): no flow asks the server for its
default result storage, nor whether to persist its result."""

from __future__ import annotations

from prefect import Flow

import flows.cases
import flows.cycles
import flows.dispatch
import flows.steps
from flows.runtime import RESULT_STORAGE


def test_every_flow_names_its_result_storage_and_keeps_no_result() -> None:
    found = [
        value
        for module in (flows.cases, flows.cycles, flows.dispatch, flows.steps)
        for value in vars(module).values()
        if isinstance(value, Flow)
    ]
    assert len({f.name for f in found}) >= 12
    for f in found:
        assert f.result_storage == RESULT_STORAGE and f.persist_result is False, f.name
