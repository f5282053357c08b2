"""The dashboard's parts without a network: hub, access token, Host names, pool."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from contract.errors import ConfigError
from gateway.dashboard.access import AccessToken, bearer
from gateway.dashboard.guard import allowed_hosts, host_name
from gateway.dashboard.hub import KEEPALIVE, Hub
from gateway.dashboard.pool import BlockingPool, PoolBusy
from gateway.dashboard.settings import DashboardSettings


def test_hub_fans_out_and_drops_a_stream_that_falls_behind() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=3, max_streams=10)
        hung_up: list[str] = []
        fast = [hub.subscribe(lambda: hung_up.append("fast")) for _ in range(3)]
        slow = hub.subscribe(lambda: hung_up.append("slow"))
        assert slow is not None
        assert all(s is not None for s in fast)
        for i in range(5):
            hub.publish("alarms", [i])
            for stream in fast:  # the fast ones read as they go
                assert stream is not None
                got = stream.queue.get_nowait()
                assert got is not None
                assert got.data == f"event: alarms\ndata: [{i}]\n\n".encode()
        assert hung_up == ["slow"]  # the fourth frame found its queue full
        assert slow.dropped
        assert hub.dropped == 1
        assert hub.streams == 3
        late = hub.subscribe(lambda: None)
        assert late is not None
        first = late.queue.get_nowait()
        assert first is not None
        assert first.data == b"event: alarms\ndata: [4]\n\n"  # the latest state
        hub.close()
        assert all(s is not None and s.queue.get_nowait() is None for s in fast)

    asyncio.run(scenario())


def test_hub_refuses_streams_beyond_its_bound() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=2, max_streams=2)
        assert hub.subscribe(lambda: None) is not None
        assert hub.subscribe(lambda: None) is not None
        assert hub.subscribe(lambda: None) is None

    asyncio.run(scenario())


def test_hub_keep_alive_reaches_every_stream_and_write_lag_skips_it() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=2, max_streams=10)
        hung_up: list[str] = []
        reader = hub.subscribe(lambda: hung_up.append("reader"))
        stalled = hub.subscribe(lambda: hung_up.append("stalled"))
        assert reader is not None
        assert stalled is not None
        hub.publish("alarms", [])
        for _ in range(2):
            hub.keep_alive()
            got = reader.queue.get_nowait()
            assert got is not None
            hub.wrote(got)
        assert reader.queue.get_nowait() is KEEPALIVE
        hub.wrote(KEEPALIVE)
        # A keep-alive counts as a frame: one that finds a full queue drops the stream.
        assert hung_up == ["stalled"]
        assert hub.streams == 1
        # The alarms frame was timed, the keep-alives (no hub time) were not.
        assert len(hub.write_lag_s) == 1
        assert hub.write_lag_s[0] >= 0

    asyncio.run(scenario())


def test_token_sources(tmp_path: Path) -> None:
    env = AccessToken.from_settings(DashboardSettings(token=SecretStr(" from-env ")))
    assert env.value == "from-env"
    assert not env.generated
    file = tmp_path / "token"
    file.write_text("from-file\nsecond line ignored\n")
    assert AccessToken.from_settings(DashboardSettings(token_file=file)).value == "from-file"
    made = AccessToken.from_settings(DashboardSettings())
    assert made.generated
    assert made.value is not None
    assert len(made.value) >= 24
    read_only = AccessToken.from_settings(DashboardSettings(read_only=True))
    assert read_only.value is not None  # reads still need it
    assert (
        AccessToken.from_settings(DashboardSettings(read_only=True, public_read=True)).value is None
    )
    assert "from-env" not in repr(env)


def test_token_refusals_name_the_source_not_the_value(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text("   \n")
    with pytest.raises(ConfigError, match="empty") as empty:
        AccessToken.from_settings(DashboardSettings(token_file=file))
    assert "token_file" in str(empty.value)
    with pytest.raises(ConfigError, match="cannot read"):
        AccessToken.from_settings(DashboardSettings(token_file=tmp_path / "missing"))
    file.write_text("s3cret-value")
    with pytest.raises(ConfigError, match="not both") as both:
        AccessToken.from_settings(
            DashboardSettings(token=SecretStr("other-s3cret"), token_file=file)
        )
    assert "s3cret" not in str(both.value)


def test_token_matches_in_constant_time_and_bearer_parsing() -> None:
    token = AccessToken("right")
    assert token.matches("right")
    assert not token.matches("wrong")
    assert not token.matches("")
    assert not token.matches(None)
    assert not AccessToken(None).matches("anything")
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer") is None
    assert bearer(None) is None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8080", "localhost"),
        ("LOCALHOST", "localhost"),
        ("localhost.:80", "localhost"),
        ("127.0.0.1:1", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("[::1]x", None),
        ("::1", None),  # an IPv6 literal must be bracketed
        ("", None),
        (None, None),
    ],
)
def test_host_name(header: str | None, name: str | None) -> None:
    assert host_name(header) == name


def test_allowed_hosts_default_and_configured() -> None:
    assert allowed_hosts(DashboardSettings()) == {"127.0.0.1", "localhost", "::1"}
    assert "gw.local" in allowed_hosts(DashboardSettings(host="gw.local"))
    assert "0.0.0.0" not in allowed_hosts(DashboardSettings(host="0.0.0.0"))
    assert allowed_hosts(DashboardSettings(allowed_hosts=("Dash.Example.",))) == {"dash.example"}


def test_pool_bounds_calls_in_flight_until_the_threads_finish() -> None:
    async def scenario() -> None:
        pool = BlockingPool(workers=1, queued=2)
        release = threading.Event()
        first = asyncio.create_task(pool.run(lambda: release.wait(10)))
        second = asyncio.create_task(pool.run(lambda: 2))
        async with asyncio.timeout(10):
            while pool.in_flight < 2:
                await asyncio.sleep(0.001)
        with pytest.raises(PoolBusy):
            await pool.run(lambda: 3)
        first.cancel()  # the caller gives up; the thread still runs, so the slot is held
        with pytest.raises(asyncio.CancelledError):
            await first
        assert pool.in_flight == 2
        with pytest.raises(PoolBusy):
            await pool.run(lambda: 3)
        release.set()
        assert await second == 2
        assert await pool.run(lambda: 4) == 4
        pool.close()

    asyncio.run(scenario())


def test_command_line_port_zero_means_any_port_not_the_default() -> None:
    from gateway.cli.dashboard import _dashboard_options
    from gateway.settings import load_settings

    settings = load_settings()
    # 0 == False in Python: the options must not drop it as "not given".
    assert _dashboard_options(settings, port=0).port == 0
    assert _dashboard_options(settings, port=None).port == settings.dashboard.port
    assert _dashboard_options(settings, read_only=False).read_only is False
