"""Reading the id out of what a person pastes: an id, a trace id, or a whole log line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_reqid_logging.lookup import Query, QueryError, parse_query

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
# "-" alone is what a record outside a request carries, never a request's id.
REQUEST_IDS = st.text(alphabet="ABCxyz0189._-", min_size=1, max_size=64).filter(
    lambda s: s != "-" and not (len(s) == 32 and all(c in "0123456789abcdefABCDEF" for c in s))
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k3v9q2xd", Query(request_id="k3v9q2xd")),
        (TRACE, Query(trace_id=TRACE)),
        (TRACE.upper(), Query(trace_id=TRACE)),
        ("  k3v9q2xd\n", Query(request_id="k3v9q2xd")),
        (
            f"2026-11-24 03:37:40,123 INFO app [req:k3v9q2xd trace:{TRACE}] hello",
            Query(request_id="k3v9q2xd", trace_id=TRACE),
        ),
        ("WARNING [req:k3v9q2xd] slow", Query(request_id="k3v9q2xd")),
        (f"level=info trace_id={TRACE} span_id=00f067aa0ba902b7 msg=x", Query(trace_id=TRACE)),
        ('{"request_id": "abc.1-2_3", "msg": "x"}', Query(request_id="abc.1-2_3")),
        # Outside a span the logging instrumentation writes trace_id=0: not an id.
        ("trace_id=0 [req:k3v9q2xd] x", Query(request_id="k3v9q2xd")),
        # What `curl -i` shows of a response: the header lines.
        ("X-Request-ID: k3v9q2xd", Query(request_id="k3v9q2xd")),
        ("x-request-id:k3v9q2xd\r\n", Query(request_id="k3v9q2xd")),
        (f"traceresponse: 00-{TRACE}-00f067aa0ba902b7-01", Query(trace_id=TRACE)),
        (f"00-{TRACE.upper()}-00F067AA0BA902B7-00", Query(trace_id=TRACE)),
        # The trace id wins over an outside marker beside it.
        (f"[req:- trace:{TRACE}] x", Query(trace_id=TRACE)),
    ],
)
def test_accepted_inputs(text: str, expected: Query) -> None:
    """Bare ids are told apart by shape; log lines are read by their id tokens."""
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no id given"),
        ("hello world", "no [req:<id> trace:<id>] prefix or id field"),
        ("x" * 65, "is neither a trace id"),
        ("abc/def", "is neither a trace id"),
        ("0" * 32, "logged outside a request"),
        ("[req:ab/cd trace:0] x", "none is a valid id"),
        # A line logged outside a request: `-` is its marker, not a request id to look up.
        ("2026-12-01 09:14:03,339 INFO gunicorn.error [req:- trace:-] Booting", "outside a"),
        ('{"request_id": "-", "trace_id": "-", "message": "x"}', "outside a request"),
        ("-", "logged outside a request"),
        (f"traceparent: 00-{'0' * 32}-00f067aa0ba902b7-01", "all-zero trace id"),
    ],
)
def test_rejected_inputs(text: str, message: str) -> None:
    """Inputs without a usable id are refused with a message saying what an id looks like."""
    with pytest.raises(QueryError) as raised:
        parse_query(text)
    assert message in str(raised.value)


@given(REQUEST_IDS, st.sampled_from(["[req:{} trace:" + TRACE + "]", "[req:{}]", "{}"]))
def test_any_allowed_request_id_comes_back(request_id: str, template: str) -> None:
    """Every id of the allowlist is read back whole, alone or inside a log line."""
    query = parse_query(
        "INFO app " + template.format(request_id) + " done" if template != "{}" else request_id
    )
    assert query.request_id == request_id


def refusal(text: str) -> str:
    """The message parse_query refuses `text` with, or "" when it accepts it."""
    try:
        parse_query(text)
    except QueryError as error:
        return str(error)
    return ""


@given(st.text(max_size=200))
def test_messages_never_carry_control_characters(text: str) -> None:
    """Whatever is pasted, a refusal message prints no control character raw."""
    assert refusal(text).isprintable()


OWN = "k3v9q2xd"
EVIL = "ev1l0000"
EVIL_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "line",
    [
        # aiohttp's access line under LOG_FORMAT: the client's path and User-Agent follow
        # the library's prefix, inside double quotes.
        f"2026-12-05 08:00:00,000 INFO aiohttp.access [req:{OWN} trace:{TRACE}] 127.0.0.1 "
        f'[05/Dec/2026:08:00:00 +0000] "GET /[req:{EVIL}] HTTP/1.1" 200 2 "-" "req:{EVIL}"',
        f'[req:{OWN} trace:{TRACE}] 127.0.0.1 "GET /?request_id={EVIL} HTTP/1.1" 200 2 '
        f'"-" "[req:{EVIL} trace:{EVIL_TRACE}]"',
        # A handler's own message, not quoted, still comes after the prefix.
        f"2026-12-05 08:00:00,000 INFO app [req:{OWN} trace:{TRACE}] path /[req:{EVIL}]",
        # requestIdPrefix (the ancestor's `[req:ID] `) before the message.
        f"INFO [req:{OWN}] request_id={EVIL} trace_id={EVIL_TRACE}",
        # A JSON line: its fields, never the text of its message.
        f'{{"message": "[req:{EVIL}] request_id={EVIL}", "request_id": "{OWN}", '
        f'"trace_id": "{TRACE}"}}',
    ],
)
def test_client_text_that_looks_like_ids_is_not_read(line: str) -> None:
    """A pasted line gives the ids the library wrote, whatever the client's text says."""
    assert parse_query(line).request_id == OWN
    assert parse_query(line).trace_id in {TRACE, None}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # Logged outside a request: the prefix says so; a later `[req:...]` is text.
        (f"INFO app [req:- trace:-] got [req:{EVIL} trace:{EVIL_TRACE}]", "outside a request"),
        # A plain aiohttp access line carries no ids of ours: its quoted parts are the
        # client's, however they look.
        (
            f'127.0.0.1 [05/Dec/2026:08:00:00 +0000] "GET /[req:{EVIL}] HTTP/1.1" 200 2 '
            f'"-" "[req:{EVIL} trace:{EVIL_TRACE}] request_id={EVIL}"',
            "no [req:<id> trace:<id>] prefix",
        ),
        # Two values for one key: which one the format wrote is unknown, so neither is taken.
        (f"msg=GET /x?x=1 request_id={EVIL} request_id={OWN}", "two different request_id"),
        (f"event='GET /?request_id={EVIL}' request_id='{OWN}'", "two different request_id"),
        # A JSON line without id fields: the text of its message is not read.
        (f'{{"message": "[req:{EVIL}] request_id={EVIL}"}}', "no [req:<id> trace:<id>]"),
    ],
)
def test_lines_whose_only_ids_are_client_text_are_refused(line: str, message: str) -> None:
    """Without the library's own prefix or fields, look-alike text gives no id."""
    assert message in refusal(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # structlog's KeyValueRenderer quotes with ', its ConsoleRenderer puts the fields last.
        (f"event='checkout' request_id='{OWN}' trace_id='{TRACE}'", Query(OWN, TRACE)),
        (f'2026-12-05 [info] "quoted" words   request_id={OWN}', Query(request_id=OWN)),
        # OpenTelemetry's logging format names the trace id otelTraceID's way: trace_id=.
        (f"[trace_id={TRACE} span_id=00f067aa0ba902b7 trace_sampled=True] - x", Query(None, TRACE)),
        # A JSON line cut short (a line longer than a reader keeps): the fields before the cut.
        (f'{{"request_id": "{OWN}", "message": "cut', Query(request_id=OWN)),
    ],
)
def test_key_value_and_cut_json_lines(line: str, expected: Query) -> None:
    """Formats that name the record fields are read by those names."""
    assert parse_query(line) == expected


@given(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80),
)
def test_any_client_path_and_user_agent_leave_the_id_alone(path: str, agent: str) -> None:
    """Whatever a client sends as path and User-Agent, the access line gives its own id."""
    line = (
        f"2026-12-05 08:00:00,000 INFO aiohttp.access [req:{OWN} trace:{TRACE}] 127.0.0.1 "
        f'[05/Dec/2026:08:00:00 +0000] "GET /{path} HTTP/1.1" 200 2 "-" "{agent}"'
    )
    assert parse_query(line) == Query(request_id=OWN, trace_id=TRACE)
