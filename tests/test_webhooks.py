"""The Teams webhook rule in models/ agrees with apprise's `workflows://` plugin, which sends.

models/ may not import apprise, so models/webhooks.py writes the rule out; these tests hold it to
apprise: every URL the rule accepts, apprise accepts as a Workflows URL; every URL apprise refuses,
the rule refuses; and where the rule is stricter than apprise, that is listed here on purpose.
"""

from __future__ import annotations

import apprise
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.webhooks import private_host_problem, teams_webhook_problem, workflows_url_problem

HOST = "prod-00.westeurope.logic.azure.com"
QUERY = "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=AbC_dEf-123"
LOGIC_APPS = f"https://{HOST}:443/workflows/abc123/triggers/manual/paths/invoke{QUERY}"
POWER_AUTOMATE = (
    "https://default0a1b2c3d.4e.environment.api.powerplatform.com:443/powerautomate/automations"
    f"/direct/workflows/0a1b2c3d4e5f/triggers/manual/paths/invoke{QUERY.replace('2016-06-01', '1')}"
)


def apprise_accepts(url: str) -> bool:
    """Whether apprise takes `url` as a Workflows (Teams) URL."""
    channel = apprise.Apprise()
    return bool(channel.add(url)) and type(channel[0]).__name__ == "NotifyWorkflows"


GOOD = [
    LOGIC_APPS,
    POWER_AUTOMATE,
    LOGIC_APPS.replace(":443", ""),
    LOGIC_APPS.replace(":443", ":8443"),
    LOGIC_APPS.replace("/invoke?", "/invoke/?"),
    LOGIC_APPS.replace("/workflows/", "/powerautomate/automations/direct/cu/123/workflows/"),
    LOGIC_APPS.replace("HTTPS", "https").replace("https://", "HTTPS://"),
    LOGIC_APPS.replace("/triggers/", "/TRIGGERS/"),
    LOGIC_APPS.replace("%2Ftriggers%2Fmanual%2Frun", "/triggers/manual/run"),
    LOGIC_APPS.replace("sig=AbC_dEf-123", "sig=AbC_dEf-123").replace("&sv=1.0", ""),
    f"https://{HOST}/workflows/a_b-C/triggers/manual/paths/invoke?sig=x",
    f"https://a_b.example.com/workflows/abc/triggers/manual/paths/invoke{QUERY}",
    f"https://8.8.8.8/workflows/abc/triggers/manual/paths/invoke{QUERY}",
]

BAD = [  # apprise refuses these; so must we
    LOGIC_APPS.replace("&sig=AbC_dEf-123", ""),
    LOGIC_APPS.replace("sig=AbC_dEf-123", "sig="),
    LOGIC_APPS.replace("sig=AbC_dEf-123", "sig=Ab+C"),
    LOGIC_APPS.replace("sig=AbC_dEf-123", "sig=Ab%2BC"),
    LOGIC_APPS.replace("sig=AbC_dEf-123", "sig=Ab.C"),
    LOGIC_APPS.replace(":443", ":0"),
    LOGIC_APPS.split("?")[0],
    LOGIC_APPS.split("?")[0] + "?",
    LOGIC_APPS.replace("abc123", "abc.123"),
    LOGIC_APPS.replace("abc123", "abc%31"),
    LOGIC_APPS.replace("/triggers/manual/paths/invoke", ""),
    LOGIC_APPS.replace("/workflows/", "/flows/"),
    LOGIC_APPS.replace("/workflows/", "/powerautomate/automations/direct/cu/x1/workflows/"),
    LOGIC_APPS + "&route=12x",
    LOGIC_APPS + "&workflow=a.b",
    LOGIC_APPS + "#fragment",
    LOGIC_APPS + " x",
    LOGIC_APPS.replace(HOST, "user@" + HOST),
    LOGIC_APPS.replace(HOST + ":443", "[2001:db8::1]"),
    LOGIC_APPS.replace(HOST, "-bad-.example.com"),
    LOGIC_APPS.replace(HOST, "a..b.example.com"),
    LOGIC_APPS.replace(HOST, "1.2.3"),
    LOGIC_APPS.replace(HOST, "999.1.1.1"),
    LOGIC_APPS.replace(HOST, "a.1.example.com"),  # apprise: a one-digit label is not a host
    LOGIC_APPS.replace(HOST, "x" * 64 + ".example.com"),
    LOGIC_APPS.replace(HOST, "münchen.example"),
    LOGIC_APPS.replace("https://", "https:/"),
    "https://discord.com/api/webhooks/123/abc",  # apprise takes it, but not as Teams
    "",
]

STRICTER = [  # apprise takes these as Workflows URLs; we refuse them, deliberately
    LOGIC_APPS.replace("https://", "http://"),  # the signature would travel in clear
    LOGIC_APPS.replace(":443", ":70000"),  # no such port: fails at the first send
    LOGIC_APPS + "&template=/etc/passwd",  # apprise would read this local file into the card
    LOGIC_APPS + "&verify=no",  # TLS verification off
    LOGIC_APPS + "&id=abc",  # overrides the workflow in the path
    LOGIC_APPS + "&sig=second",  # given twice: which one is meant?
    LOGIC_APPS.replace(HOST, "intranet"),  # not a dotted host name
    LOGIC_APPS.replace(HOST, "2130706433"),  # 127.0.0.1 written as a number
    LOGIC_APPS.replace(HOST, "010.1.1.1"),  # an octal-looking address
    "workflows://" + HOST + "/abc/AbC",  # apprise's own scheme: not what Power Automate gives
]


@pytest.mark.parametrize("url", GOOD)
def test_a_good_url_is_accepted_by_both(url: str) -> None:
    assert apprise_accepts(url), url
    assert workflows_url_problem(url) is None


@pytest.mark.parametrize("url", BAD)
def test_a_url_apprise_refuses_is_refused(url: str) -> None:
    assert not apprise_accepts(url)
    assert workflows_url_problem(url) is not None


@pytest.mark.parametrize("url", STRICTER)
def test_where_we_are_stricter_than_apprise_it_is_on_purpose(url: str) -> None:
    assert apprise_accepts(url)
    assert teams_webhook_problem(url) is not None


_PIECES = st.sampled_from(
    ["", "/", "?", "&", "=", ":", ".", "-", "_", "%", "%2B", "@", "#", " ", "sig", "0", "9", "x"]
    + ["workflows", "triggers", "invoke", "127.0.0.1", "[::1]", ":65536", "&sig=", "\n", "é"]
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(LOGIC_APPS)), st.integers(0, 6), _PIECES)
def test_whatever_we_accept_apprise_accepts(at: int, cut: int, piece: str) -> None:
    """Mutations of a good URL: the rule never accepts one that apprise would refuse."""
    url = LOGIC_APPS[:at] + piece + LOGIC_APPS[at + cut :]
    if workflows_url_problem(url) is None:
        assert apprise_accepts(url), url


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("localhost", "localhost"),
        ("api.localhost", "localhost"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("[fc00::1]", "private"),
        ("[fd12:3456::1]", "private"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("224.0.0.1", "not a public address"),
    ],
)
def test_a_host_on_this_machine_or_a_private_network_is_refused(host: str, words: str) -> None:
    url = LOGIC_APPS.replace(HOST + ":443", host)
    problem = private_host_problem(url)
    assert problem is not None and words in problem
    assert teams_webhook_problem(url) == problem  # named for what it is, before the shape


@pytest.mark.parametrize("host", [HOST, "8.8.8.8", "172.32.0.1", "11.0.0.1", "[2001:4860::8888]"])
def test_a_public_host_is_fine(host: str) -> None:
    assert private_host_problem(LOGIC_APPS.replace(HOST + ":443", host)) is None
