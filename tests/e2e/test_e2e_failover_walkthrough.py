"""The README's failover walkthrough, run as written (on free ports) and held to what it says.

The block after ``<!-- failover-walkthrough -->`` is read from the README and
each of its commands is carried out: environment assignments and ``export``
as environment, ``pigeon …`` as a process, ``curl`` as the same HTTP request.
Only the ports change (8000, 8025 and 8026 become free ones), and the last
``curl``'s ``ntf_…`` becomes the id the send answered.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.e2e_processes import PigeonCluster, PigeonProcess, wait_for
from tests.support import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = "<!-- failover-walkthrough -->"
#: what the README says of the result, checked below against the API's answer
CLAIMS = (
    '"provider": "backup"',
    '`sending` "attempt 1 via failover(primary,backup)"',
    '`sent` "accepted\nby backup as SM…"',
)


def walkthrough() -> list[str]:
    """The block's commands: continuation lines joined, and a quoted value over several
    lines (the provider list) kept in one command, as the shell reads them."""
    text = README.read_text()
    block = text[text.index(MARK) :].split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        if pending.strip():
            commands.append(pending.strip())
        pending = ""
    assert not pending, f"an unclosed quote in the walkthrough: {pending}"
    return commands


def _assignments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0], re.DOTALL):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def _curl(words: list[str], key: str) -> tuple[str, str, dict[str, str], str | None]:
    """``curl -s [-X METHOD] URL [-H 'Name: value']… [-d BODY]`` as its parts."""
    method, url, headers, body = "GET", "", {}, None
    args = iter(words[1:])
    for word in args:
        if word == "-s":
            continue
        if word == "-X":
            method = next(args)
        elif word == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip().replace("$KEY", key)
        elif word == "-d":
            body = next(args)
            method = "POST" if method == "GET" else method
        else:
            url = word
    return method, url, headers, body


def _on_free_ports(line: str, ports: dict[str, str]) -> str:
    for old, new in ports.items():
        line = line.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        line = line.replace(f"--port {old}", f"--port {new}")
    return line


@pytest.mark.timeout(120)
async def test_the_readme_failover_walkthrough_does_what_it_says(tmp_path: Path) -> None:
    cluster = PigeonCluster(tmp_path)
    backup_port = free_port()
    ports = {
        "8000": str(cluster.api_port),
        "8025": str(cluster.sandbox_port),
        "8026": str(backup_port),
    }
    env: dict[str, str] = {}
    key = ""
    answers: list[httpx.Response] = []
    try:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            for written in walkthrough():
                line = _on_free_ports(written, ports)
                words = shlex.split(line.removesuffix("&").strip(), comments=True)
                if words[0] == "export":
                    env.update(_assignments(words[1:])[0])
                    continue
                if words[0].startswith("KEY="):
                    key = (tmp_path / words[-1].rstrip(")")).read_text().strip()
                    continue
                given, words = _assignments(words)
                if words[0] == "pigeon":
                    await _start(cluster, words[1:], {**env, **given}, backup_port)
                elif words[0] == "curl":
                    method, url, headers, body = _curl(words, key)
                    if "ntf_…" in url:
                        url = url.replace("ntf_…", answers[-1].json()["id"])
                        _check(await _delivered(http, url, headers))
                        return
                    answer = await http.request(method, url, headers=headers, content=body)
                    assert answer.status_code < 300, (line, answer.text)
                    answers.append(answer)
                else:
                    raise AssertionError(f"a command this test cannot run: {line}")
        raise AssertionError("the walkthrough never looked the notification up")
    finally:
        cluster.stop_all()


async def _delivered(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Any:
    seen: list[Any] = []

    async def look() -> httpx.Response:
        answer = await http.get(url, headers=headers)
        seen[:] = [answer.json()]
        return answer

    try:
        await wait_for(
            look,
            lambda got: got.json()["status"] == "delivered",
            within=60,
            what="the notification delivered through the backup",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the notification: {seen}") from None
    return seen[0]


async def _start(
    cluster: PigeonCluster, args: list[str], env: dict[str, str], backup_port: int
) -> PigeonProcess:
    if args[0] == "sandbox":
        process = cluster.spawn(
            "backup", *args, env=env, ready_url=f"http://127.0.0.1:{backup_port}/sandbox/health"
        )
    else:
        process = cluster.spawn(
            "run",
            *args,
            env=env,
            ready_url=f"{cluster.api_url}/healthz",
            ready_line="Pigeon is running.",
        )
    await cluster.start(process)
    return process


def _check(view: dict[str, Any]) -> None:
    readme = README.read_text()
    for claim in CLAIMS:
        assert claim in readme  # the README still says what this test checks
    assert view["provider"] == "backup"
    assert view["attempts"] == 1
    steps = [(step["status"], step["detail"]) for step in view["timeline"]]
    assert [status for status, _ in steps] == ["accepted", "queued", "sending", "sent", "delivered"]
    assert steps[2][1] == "attempt 1 via failover(primary,backup)", steps
    assert steps[3][1].startswith("accepted by backup as SM"), steps
