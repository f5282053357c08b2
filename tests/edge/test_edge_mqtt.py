"""The reconnect backoff (exponential, capped, jittered, reset on success) and tickets."""

from __future__ import annotations

import random

import pytest

from edge.mqtt import Backoff, MqttLink, MqttSettings


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 8.0, 0.5, rng=random.Random(1))
    delays = [backoff.next() for _ in range(10)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(10)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling * 0.5 <= delay <= ceiling
    assert max(delays) <= 8.0
    backoff.reset()
    assert backoff.next() <= 0.5


def test_jitter_spreads_a_fleet() -> None:
    fleet = [Backoff(1.0, 60.0, 0.5, rng=random.Random(seed)) for seed in range(50)]
    for b in fleet:
        for _ in range(5):
            b.next()
    sixth = [b.next() for b in fleet]  # everyone at the 32 s step
    assert min(sixth) >= 16.0
    assert max(sixth) <= 32.0
    assert max(sixth) - min(sixth) > 8.0  # not in lock-step


def test_no_jitter_is_plain_exponential() -> None:
    backoff = Backoff(1.0, 4.0, 0.0)
    assert [backoff.next() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]


def test_bad_backoff_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="base <= cap"):
        Backoff(5.0, 1.0)


def test_link_hands_its_jittered_delay_to_paho() -> None:
    link = MqttLink(
        MqttSettings(client_id="x", reconnect_min_s=0.2, reconnect_max_s=3, reconnect_jitter=0.5)
    )
    for _ in range(6):
        link._arm_backoff()
        delay = link.client._reconnect_min_delay
        assert delay == link.client._reconnect_max_delay
        assert 0.1 <= delay <= 3.0


def test_mqtt_5_keeps_a_persistent_session_without_expiry_as_3_1_1_does() -> None:
    import paho.mqtt.client as mqtt

    v3 = MqttLink(MqttSettings(client_id="x", protocol="3.1.1"))
    assert v3.client._protocol == mqtt.MQTTv311
    v5 = MqttLink(MqttSettings(client_id="x"))  # 5 is the default
    assert v5.client._protocol == mqtt.MQTTv5
    assert v5._connect.clean_start is False
    assert v5._connect.properties is not None
    assert v5._connect.properties.SessionExpiryInterval == 0xFFFFFFFF
    clean = MqttLink(MqttSettings(client_id="x", protocol="5", clean_session=True))
    assert clean._connect.clean_start is True
    assert clean._connect.properties is not None
    assert clean._connect.properties.SessionExpiryInterval == 0


def test_a_ticket_for_a_publish_made_while_disconnected_is_pending_not_failed() -> None:
    """paho keeps a QoS 1 publish made while down and sends it on reconnect; a QoS 0
    one is dropped. Neither ticket raises: one is pending, the other never arrives."""
    link = MqttLink(MqttSettings(port=1, client_id="never-connected"))
    queued = link.publish("t/queued", b"x", qos=1)
    dropped = link.publish("t/dropped", b"x", qos=0)
    assert not queued.is_acknowledged()
    assert not queued.wait(0.01)
    assert not dropped.is_acknowledged()
    assert not dropped.wait(0.01)
    assert queued.mid in link.client._out_messages  # kept, to be sent on reconnect


class _SlowTicket:
    """Acknowledged on the n-th wait (each wait sleeps the step it is given)."""

    def __init__(self, acked_after: int | None) -> None:
        self.calls, self.acked_after, self.mid = 0, acked_after, 7

    def wait(self, timeout: float) -> bool:
        import time

        self.calls += 1
        time.sleep(min(timeout, 0.05))
        return self.acked_after is not None and self.calls >= self.acked_after


def test_time_the_broker_is_away_does_not_count_against_the_ack_timeout() -> None:
    link = MqttLink(MqttSettings(port=1, client_id="away"))  # never connects
    ticket = _SlowTicket(acked_after=5)
    # Five waits of the broker being away, far past the 0.01 s allowed while connected:
    # the publish is queued for the reconnect, so the caller waits, it does not fail.
    assert link.wait_acknowledged(ticket, timeout=0.01)  # type: ignore[arg-type]
    assert ticket.calls == 5


def test_a_connected_broker_that_never_acknowledges_times_out() -> None:
    link = MqttLink(MqttSettings(port=1, client_id="silent"))
    link._connected.set()  # as if connected: the broker takes the publish, never acks
    ticket = _SlowTicket(acked_after=None)
    assert not link.wait_acknowledged(ticket, timeout=0.2)  # type: ignore[arg-type]
    assert ticket.calls >= 1
