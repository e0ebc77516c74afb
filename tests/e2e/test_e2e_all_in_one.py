"""``pigeon run``: the API, every worker and the sandbox from one command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.e2e_processes import STACKS, PigeonCluster, inbox, send_sms, statuses, wait_for
from tests.support import eventually

COUNT = 5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_pigeon_run_serves_the_api_workers_and_sandbox_in_one_process(
    cluster: PigeonCluster,
) -> None:
    """SMS sent to ``pigeon run`` reach its own sandbox and become delivered."""
    # Given ``pigeon run`` and the dev key it prints and keeps in the data folder
    process = cluster.run_all_in_one()
    await cluster.start(process)
    key = (cluster.data_dir / "dev-api-key").read_text().strip()
    assert f"Dev API key:  {key}" in process.stdout()
    assert f"Console:      {cluster.api_url}/console" in process.stdout()

    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        # When five SMS are sent
        responses = await asyncio.gather(
            *(send_sms(api, f"+1212555{i:04d}", f"All in one {i}") for i in range(COUNT))
        )
        assert [r.status_code for r in responses] == [202] * COUNT
        ids = [str(r.json()["id"]) for r in responses]

        # Then they reach the sandbox inbox
        received = await wait_for(
            lambda: inbox(sandbox),
            lambda got: len(got) >= COUNT,
            within=30,
            what="five SMS in the inbox",
        )
        assert sorted((m["to"], m["body"]) for m in received) == [
            (f"+1212555{i:04d}", f"All in one {i}") for i in range(COUNT)
        ]

        # And become delivered
        details = await wait_for(
            lambda: statuses(api, ids),
            lambda got: all(d["status"] == "delivered" for d in got.values()),
            within=30,
            what="five delivered notifications",
        )
        assert {d["provider_message_id"] for d in details.values()} == {m["sid"] for m in received}

    # And the one process stops cleanly on SIGTERM
    assert process.terminate() == 0
    assert "Traceback" not in process.stderr()


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _role(pid: int) -> str:
    """What a process below ``pigeon run`` is: ``workers`` (forked: named by ``prctl``,
    since a fork keeps its parent's command line), the ``sandbox``, or workers started
    as a new interpreter (``worker <names>``)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        args = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "(ended)"
    if comm.startswith("pigeon-"):
        return comm.removeprefix("pigeon-")
    if b"pigeon" not in args:
        return "(starting)"  # forked, not yet running ``python -m pigeon``; or a zombie
    return b" ".join(args[args.index(b"pigeon") + 1 :]).decode()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be read


@pytest.mark.timeout(120)
async def test_pigeon_run_workers_are_child_processes_that_end_with_it_even_on_kill_9(
    cluster: PigeonCluster,
) -> None:
    """Every worker runs in one process forked from ``pigeon run``, the sandbox in
    another; kill -9 of the parent ends them both."""
    # Given ``pigeon run`` with its workers and its sandbox started
    process = cluster.run_all_in_one()
    await cluster.start(process)
    roles = {_role(c).split()[0]: c for c in _children(process.pid)}
    assert set(roles) == {"workers", "sandbox"}, roles

    # When the parent is killed with SIGKILL (no chance to stop them itself)
    process.kill9()

    # Then every process below it ends (the parent-death signal), none left behind
    await eventually(lambda: not any(_alive(c) for c in roles.values()), within=20)


async def _send_and_receive(cluster: PigeonCluster, key: str, body: str) -> None:
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        response = await send_sms(api, "+12125550100", body)
        assert response.status_code == 202
        received = await wait_for(
            lambda: inbox(sandbox),
            lambda got: any(m["body"] == body for m in got),
            within=30,
            what=f"{body!r} in the sandbox's inbox",
        )
        assert [m["to"] for m in received if m["body"] == body] == ["+12125550100"]


@pytest.mark.timeout(120)
async def test_a_killed_workers_process_comes_back_as_a_new_interpreter(
    cluster: PigeonCluster,
) -> None:
    """The forked workers' process killed with SIGKILL is started again (as ``pigeon
    worker …``), and what was sent before and after it is delivered."""
    # Given ``pigeon run`` and its forked workers
    process = cluster.run_all_in_one()
    await cluster.start(process)
    key = (cluster.data_dir / "dev-api-key").read_text().strip()
    await _send_and_receive(cluster, key, "before the workers were killed")
    (forked,) = [c for c in _children(process.pid) if _role(c) == "workers"]

    # When the workers' process is killed with SIGKILL
    os.kill(forked, signal.SIGKILL)
    await eventually(lambda: not _alive(forked), within=10)

    # Then a new interpreter runs every worker, and an SMS sent now is delivered
    await eventually(
        lambda: any(_role(c).startswith("worker ") for c in _children(process.pid)), within=20
    )
    await _send_and_receive(cluster, key, "after the workers were killed")
    assert "workers ended" in process.stderr() + process.stdout()
    assert process.terminate() == 0


@pytest.mark.timeout(120)
async def test_a_killed_sandbox_child_comes_back_on_the_same_port(cluster: PigeonCluster) -> None:
    """``pigeon run`` restarts its sandbox on the socket it keeps; sending goes on."""
    # Given ``pigeon run`` and its sandbox child
    process = cluster.run_all_in_one()
    await cluster.start(process)
    key = (cluster.data_dir / "dev-api-key").read_text().strip()
    (sandbox_pid,) = [c for c in _children(process.pid) if _role(c).startswith("sandbox")]

    # When the sandbox is killed with SIGKILL
    os.kill(sandbox_pid, signal.SIGKILL)
    await eventually(lambda: not _alive(sandbox_pid), within=10)

    # Then a new one serves the same port, and an SMS sent now reaches it
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        response = await send_sms(api, "+12125550100", "after the restart")
        assert response.status_code == 202
        received = await wait_for(
            lambda: inbox(sandbox),
            lambda got: any(m["body"] == "after the restart" for m in got),
            within=30,
            what="the SMS in the restarted sandbox's inbox",
        )
        assert [m["to"] for m in received] == ["+12125550100"]
    assert sandbox_pid not in _children(process.pid)
    assert "sandbox ended" in process.stderr() + process.stdout()
    assert process.terminate() == 0


def _nice(pid: int) -> int:
    """A process's niceness (field 19 of /proc/PID/stat, after the parenthesised name)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def _autogroup_nice(pid: int) -> int:
    """The niceness of a process's autogroup (``/autogroup-N nice K``)."""
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


@pytest.mark.timeout(120)
async def test_workers_yield_the_cores_to_the_api(cluster: PigeonCluster) -> None:
    """``pigeon run``'s workers run PIGEON_WORKER_NICE (5) below the API; a worker that
    leads its own session (as a service manager starts it) lowers its session's too."""
    run = cluster.run_all_in_one()
    await cluster.start(run)
    roles = {_role(c).split()[0]: c for c in _children(run.pid)}
    assert "workers" in roles, roles
    assert _nice(roles["workers"]) == _nice(run.pid) + 5
    assert _nice(run.pid) == _nice(os.getpid())  # the API keeps its priority

    meter = cluster.spawn(
        "meter",
        "worker",
        "usage-meter",
        ready_line="worker usage-meter started",
        env={"PIGEON_WORKER_NICE": "7"},
    )
    await cluster.start(meter)
    assert _nice(meter.pid) == _nice(os.getpid()) + 7
    assert _autogroup_nice(meter.pid) == 7
