"""A wct flow run costs only what it must (flows/runtime.py): no flow asks the server for its
default result storage, nor whether to persist its result; each checks its
parameters with a validator built once per process, as strictly as Prefect would, unless its
run name reads a model's attribute."""

from __future__ import annotations

import asyncio
import base64
import inspect
import subprocess
import sys
from datetime import UTC, datetime

import cloudpickle  # type: ignore[import-untyped]  # Prefect's own dependency: how a served run gets its flow
import pytest
from prefect import Flow
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

import flows.cases
import flows.cycles
import flows.dispatch
import flows.steps
from flows.runtime import RESULT_STORAGE, _validator, wct_flow


def wct_flows() -> list[Flow[..., object]]:
    """Every flow wct declares."""
    return [
        value
        for module in (flows.cases, flows.cycles, flows.dispatch, flows.steps)
        for value in vars(module).values()
        if isinstance(value, Flow)
    ]


def test_every_flow_names_its_result_storage_and_keeps_no_result() -> None:
    found = wct_flows()
    assert len({f.name for f in found}) >= 12
    for f in found:
        assert f.result_storage == RESULT_STORAGE and f.persist_result is False, f.name


def test_every_flow_checks_its_parameters_once_per_process_unless_its_name_reads_a_model() -> None:
    found = wct_flows()
    prefect_checks = {f.name for f in found if f.should_validate_parameters}
    # Their run names read a model's attribute (`dispute-{request.title}`).
    assert prefect_checks == {"dispute", "call-to-account", "risk", "approval", "record-meeting"}
    for f in found:
        # Prefect still reads the signature for the deployment's parameter schema.
        assert list(parameter_schema(f).properties) == list(inspect.signature(f.fn).parameters)


def test_a_served_runs_json_parameters_are_checked_and_converted() -> None:
    # A served run receives its parameters as JSON values: `as_of` is text.
    checked = _validator(inspect.unwrap(flows.steps.step.fn))
    assert _validator(inspect.unwrap(flows.steps.step.fn)) is checked  # built once
    seen: dict[str, object] = {}

    @wct_flow("test-parameters")
    async def probe(key: str, as_of: datetime | None = None) -> str:
        seen.update(key=key, as_of=as_of)
        return key

    assert asyncio.run(probe.fn(key="k", as_of="2027-03-09T09:00:00+00:00")) == "k"  # type: ignore[arg-type]
    assert seen["as_of"] == datetime(2027, 3, 9, 9, tzinfo=UTC)
    with pytest.raises(ValidationError) as refused:
        asyncio.run(probe.fn(key="k", as_of="next Tuesday"))  # type: ignore[arg-type]
    assert "as_of" in str(refused.value)
    assert seen["as_of"] == datetime(2027, 3, 9, 9, tzinfo=UTC)  # the body did not run again


def test_a_pickled_flow_checks_its_parameters_in_a_new_process() -> None:
    # A served run gets the flow pickled; its validator is built there, from the module.
    code = (
        "import asyncio, base64, sys, cloudpickle\n"
        "from pydantic import ValidationError\n"
        "flow = cloudpickle.loads(base64.b64decode(sys.argv[1]))\n"
        "try:\n"
        "    asyncio.run(flow.fn(key='k', as_of='next Tuesday'))\n"
        "except ValidationError as exc:\n"
        "    print('refused', [e['loc'] for e in exc.errors()])\n"
    )
    pickled = base64.b64encode(cloudpickle.dumps(flows.steps.step)).decode()
    done = subprocess.run(
        [sys.executable, "-c", code, pickled], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "refused [('as_of',)]", done.stderr[-2000:]


def test_a_served_runs_process_loads_no_migration_tool_nor_word_writer() -> None:
    # Every served flow run is a new process that imports its flow's module (a module path,
    # deployments/common.py): Alembic (with Mako) and python-docx (with lxml) are ~0.3 s of its
    # imports, for `wct` commands that migrate or write a Word document, not for a flow run.
    code = (
        "import sys\n"
        "import flows.cases, flows.cycles, flows.dispatch, flows.steps\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(loaded & {'alembic', 'mako', 'docx', 'lxml'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]


def test_runs_a_driver_starts_send_no_heartbeats_and_others_keep_prefects(
    prefect_harness: str,  # noqa: ARG001  (the session's server)
) -> None:
    # Prefect's default: a heartbeat thread and event for every run (a served run keeps it).
    from prefect.settings import get_current_settings

    from flows.runtime import one_client

    @wct_flow("heartbeat-probe")
    async def probe() -> int | None:
        return get_current_settings().flows.heartbeat_frequency

    async def driven() -> tuple[int | None, int | None]:
        async with one_client():
            inside = await probe()
        return inside, await probe()

    inside, outside = asyncio.run(driven())
    assert inside is None
    assert outside == 180


def test_a_plain_http_api_on_this_machine_loads_no_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prefect's API clients build an SSL context from a CA bundle even for a plain-http API,
    which never uses it: within `api` for an http:// server on this machine (`wct up`'s) they
    load wct's one unused certificate instead of the bundle Prefect would load (SSL_CERT_FILE's,
    else certifi's). Another host (it may redirect to https), an https:// one, and a bundle
    chosen for Prefect keep Prefect's choice."""
    import ssl
    import threading

    import certifi
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, temporary_settings

    from deployments.server import api

    built: list[ssl.SSLContext] = []
    real = ssl.create_default_context
    here = threading.get_ident()  # not Prefect's own threads (its events worker checks too)

    def spy(*args: object, **kwargs: object) -> ssl.SSLContext:  # the real one, counted
        context = real(*args, **kwargs)  # type: ignore[arg-type]
        if threading.get_ident() == here:
            built.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", spy)

    def certificates_loaded(api_url: str) -> list[int]:
        built.clear()
        with api(api_url):
            get_client()
            get_client(sync_client=True)
        return [len(context.get_ca_certs()) for context in built]

    assert certificates_loaded("http://127.0.0.1:4200/api") == [1, 1]
    assert certificates_loaded("http://localhost:4200/api") == [1, 1]
    for elsewhere in ("https://prefect.example.org/api", "http://prefect.example.org/api"):
        assert all(n > 50 for n in certificates_loaded(elsewhere))
    bundle = len(real(cafile=certifi.where()).get_ca_certs())
    assert bundle > 50
    with temporary_settings(updates={PREFECT_API_SSL_CERT_FILE: certifi.where()}):
        assert certificates_loaded("http://127.0.0.1:4200/api") == [bundle, bundle]
