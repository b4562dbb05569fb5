"""The examples the README shows, run as real processes, with their log lines checked."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiohttp import ClientSession

from tests.subprocess_app import BIN, run_app_process

LINE = re.compile(r"\[req:(\S+) trace:([0-9a-f]{32})\] (.*)$")


async def get_ids(url: str, count: int) -> list[str]:
    async with ClientSession() as session:

        async def one() -> str:
            async with session.get(url + "/") as response:
                assert await response.text() == "hello\n"
                return response.headers["X-Request-ID"]

        return list(await asyncio.gather(*(one() for _ in range(count))))


@pytest.mark.parametrize("example", ["programmatic.py", "middleware_only.py"])
def test_example_logs_ids_on_every_line(example: str, tmp_path: Path) -> None:
    """Each request's handler line and access line carry its id and one trace id."""
    env = {"OTEL_REQID_SPANS_FILE": str(tmp_path / "spans.jsonl")}
    with run_app_process([str(BIN / "python"), f"examples/{example}"], env) as app:
        ids = asyncio.run(get_ids(app.url, 5))
    assert len(set(ids)) == 5
    seen: dict[str, list[tuple[str, str]]] = {}
    for line in app.output:
        match = LINE.search(line)
        if match:
            seen.setdefault(match[1], []).append((match[2], match[3]))
    for request_id in ids:
        lines = seen[request_id]
        assert [m for _, m in lines if m == "saying hello"] == ["saying hello"]
        assert any('"GET / HTTP/1.1" 200' in m for _, m in lines)
        assert len({trace for trace, _ in lines}) == 1
    if example == "programmatic.py":
        spans = (tmp_path / "spans.jsonl").read_text()
        assert all(f'"stringValue":"{request_id}"' in spans for request_id in ids)
