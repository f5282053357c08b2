"""The connection plan of a per-device fleet, and the aiomqtt internals the adapter leans on."""

from __future__ import annotations

import inspect
import socket

import aiomqtt
import paho.mqtt.client as paho_mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.exception import MalformedPacket
from pydantic import ValidationError

from simulators.aio_link import housekeeping_period
from simulators.aio_packets import handle_puback, publish_packet
from simulators.connections import ConnectionPlan


def test_templates_name_each_device():
    plan = ConnectionPlan(client_id_template="c-{site}-{device}", username_template="{device}")
    assert plan.client_id("s1", "d7") == "c-s1-d7"
    assert plan.username("s1", "d7") == "d7"
    assert ConnectionPlan().username("s1", "d7") is None


@pytest.mark.parametrize("template", ["sim-{nope}", "sim-{0}", "sim-{site"])
def test_a_bad_template_is_refused_with_what_arrived(template):
    with pytest.raises(ValidationError, match="client_id_template"):
        ConnectionPlan(client_id_template=template)


def test_backoff_bounds_are_checked():
    with pytest.raises(ValidationError, match="backoff_max_s"):
        ConnectionPlan(backoff_min_s=5, backoff_max_s=1)


def test_ramp_is_shuffled_within_rate_and_repeatable():
    plan = ConnectionPlan(ramp_rate=100, seed=3)
    offsets = plan.ramp_offsets(1000)
    assert offsets == plan.ramp_offsets(1000)
    assert offsets != sorted(offsets)  # shuffled: site order is not connection order
    slots = sorted(int(o * 100) for o in offsets)
    assert slots == list(range(1000))  # one device per slot of 1/rate s
    assert max(offsets) < 10.0


def test_zero_jitter_connects_at_the_slot_start():
    offsets = ConnectionPlan(ramp_rate=10, ramp_jitter=0).ramp_offsets(5)
    assert sorted(offsets) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_victims_are_the_fraction_and_repeatable():
    plan = ConnectionPlan(drop_fraction=0.25, seed=9)
    items = list(range(200))
    victims = plan.victims(items)
    assert len(victims) == 50
    assert len(set(victims)) == 50
    assert victims == plan.victims(items)
    assert ConnectionPlan(drop_fraction=0.25, seed=10).victims(items) != victims


def test_bind_addresses_round_robin():
    plan = ConnectionPlan(bind_addresses=("127.0.0.1", "127.0.0.2"))
    assert [plan.bind_address(i) for i in range(3)] == ["127.0.0.1", "127.0.0.2", "127.0.0.1"]
    assert ConnectionPlan().bind_address(0) is None


def test_housekeeping_follows_the_keepalive_unless_told():
    assert housekeeping_period(30) == 10
    assert housekeeping_period(2) == 1  # never more often than aiomqtt's own second
    assert housekeeping_period(30, 1.0) == 1.0


def test_the_aiomqtt_internals_the_adapter_uses_are_still_there():
    # simulators/aio_link.py overrides Client._misc_loop (one housekeeping sweep) and the
    # paho socket callbacks _on_socket_register_write/_on_socket_unregister_write
    # (batched writes), reaches the paho client as Client._client (abrupt close) and
    # reads Client._disconnected (a broken connection's error, marked as retrieved).
    # An aiomqtt upgrade that renames or rewires any of them must fail here, not in a
    # fleet.
    init = _source(aiomqtt.Client.__init__)
    assert "self._client: mqtt.Client" in init
    assert "self._disconnected: asyncio.Future[None]" in init
    assert "self._client.on_socket_register_write = self._on_socket_register_write" in init
    assert "self._client.on_socket_unregister_write = self._on_socket_unregister_write" in init
    assert callable(getattr(aiomqtt.Client, "_misc_loop", None))
    assert "self._misc_task = self._loop.create_task(self._misc_loop())" in _source(
        aiomqtt.Client._on_socket_open
    )
    # _FleetClient._on_publish takes the PUBACKs of what DeviceLink.send sent and passes
    # the rest (births, goodbyes) on to aiomqtt's own.
    assert "self._client.on_publish = self._on_publish" in init
    assert "self._pending_publishes.pop(mid).set()" in _source(aiomqtt.Client._on_publish)
    # The writer aiomqtt adds is what a batched write falls back on when a socket is full.
    assert "self._loop.add_writer" in _source(aiomqtt.Client._on_socket_register_write)
    assert "self._loop.remove_writer" in _source(aiomqtt.Client._on_socket_unregister_write)


def test_the_paho_internals_the_send_path_uses_are_still_there():
    # simulators/aio_link.py sends telemetry at QoS 1 by encoding the PUBLISH itself and
    # queueing it with paho's _packet_queue (packet id from _mid_generate, topic checked
    # by _raise_for_invalid_topic, refused when _sock is None), and replaces paho's
    # Client._handle_pubackcomp on each fleet client with handle_puback, which reads the packet
    # id from _in_packet["packet"] and otherwise does what paho does (_do_on_publish
    # under _out_message_mutex). A paho upgrade that changes these fails here.
    queue = inspect.signature(paho_mqtt.Client._packet_queue)
    assert list(queue.parameters)[:5] == ["self", "command", "packet", "mid", "qos"]
    assert queue.parameters["info"].default is None
    send = _source(paho_mqtt.Client._send_publish)
    assert "if self._sock is None:" in send
    assert "return self._packet_queue(PUBLISH, packet, mid, qos, info)" in send
    assert "self._last_mid += 1" in _source(paho_mqtt.Client._mid_generate)
    assert callable(paho_mqtt.Client._raise_for_invalid_topic)
    # paho reads a queued packet's info after writing it only at QoS 0; the QoS 1 packets
    # queued without one must never reach that line.
    assert "== PUBLISH and packet['qos'] == 0:" in _source(paho_mqtt.Client._packet_write)
    handle = _source(paho_mqtt.Client._handle_pubackcomp)
    assert 'self._in_packet["packet"]' in handle
    assert "with self._out_message_mutex:" in handle
    assert "if mid in self._out_messages:" in handle
    assert "rc = self._do_on_publish(mid, reasonCode, properties)" in handle
    assert 'return self._handle_pubackcomp("PUBACK")' in _source(paho_mqtt.Client._packet_handle)


@pytest.mark.parametrize("size", [0, 1, 100, 127, 128, 16_383, 16_384, 2_100_000])
def test_the_publish_packet_is_the_one_paho_sends(size):
    # paho's own _send_publish, written to a socket pair, against publish_packet.
    client = paho_mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pin")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        theirs.setblocking(False)
        client._sock = ours
        payload = bytes(i % 251 for i in range(size))
        topic = "sg/v1/site-a/dev-1/telemetry"
        assert client._send_publish(513, topic.encode(), payload, qos=1) == 0
        expected = b""
        while client._out_packet:  # a big packet may take several writes
            client.loop_write()
            expected += _read_all(theirs)
        expected += _read_all(theirs)
        head = len(topic).to_bytes(2, "big") + topic.encode()
        assert publish_packet(head, 513, payload) == expected


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_a_puback_of_a_message_sent_by_the_fleet_goes_to_its_callback():
    client = paho_mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pin")
    seen: list[int] = []
    client._in_packet = {**client._in_packet, "command": 0x40, "packet": b"\x01\x02"}
    sent = {0x0102: seen.append, 7: seen.append}
    assert handle_puback(client, "PUBACK", sent) == paho_mqtt.MQTT_ERR_SUCCESS
    assert (seen, list(sent)) == ([0x0102], [7])


@pytest.mark.parametrize("outstanding", [True, False])
def test_the_puback_shortcut_does_what_paho_does(outstanding):
    # Same state, paho's handler and the shortcut: same return code, same callback, same
    # messages left outstanding.
    def run(handler):
        client = paho_mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pin")
        seen = []
        client.on_publish = lambda _c, _u, mid, reason, _p: seen.append((mid, reason.value))
        info = client.publish("pin/t", b"x", qos=1)  # not connected: stays outstanding
        mid = info.mid if outstanding else info.mid + 1
        client._in_packet = {**client._in_packet, "command": 0x40, "packet": mid.to_bytes(2, "big")}
        rc = handler(client)
        return rc, seen, sorted(client._out_messages), info._published

    assert run(lambda c: handle_puback(c, "PUBACK", {})) == run(
        lambda c: c._handle_pubackcomp("PUBACK")
    )
    rc, seen, left, published = run(lambda c: handle_puback(c, "PUBACK", {}))
    assert rc == paho_mqtt.MQTT_ERR_SUCCESS
    assert (bool(seen), bool(left), published) == (
        (True, False, True) if outstanding else (False, True, False)
    )


def test_a_malformed_puback_is_left_to_paho():
    client = paho_mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pin")
    client._in_packet = {**client._in_packet, "command": 0x40, "packet": b"\x00\x01\x02"}
    with pytest.raises(MalformedPacket):
        client._handle_pubackcomp("PUBACK")
    with pytest.raises(MalformedPacket):
        handle_puback(client, "PUBACK", {})


def _source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]
