"""Sparkplug B: births, aliases, seq and bdSeq, deaths, rebirth requests.

Payloads follow the Sparkplug 3.0 specification's examples and Eclipse Tahu's payload
definition (https://github.com/eclipse/tahu, sparkplug_b/sparkplug_b.proto): an NBIRTH
with ``bdSeq`` and ``seq`` 0 and metrics named and aliased, NDATA by alias with ``seq``
incrementing modulo 256, an NDEATH carrying the same ``bdSeq``.
"""

from __future__ import annotations

from adapter_kit import NOW, one, rows, run, units

from dataflows.adapters.sparkplug import sparkplug_b_pb2 as pb
from dataflows.adapters.sparkplug.adapter import SparkplugAdapter
from simulators.sparkplug_wire import sparkplug_metric, sparkplug_payload

T_MS = NOW // 1000 - 5_000
INT32, INT64, FLOAT, DOUBLE, BOOLEAN, STRING = 3, 4, 9, 10, 11, 12


def payload(seq: int | None, metrics: list[dict[str, object]], ts: int | None = T_MS) -> bytes:
    msg = pb.Payload()
    if ts is not None:
        msg.timestamp = ts
    if seq is not None:
        msg.seq = seq
    for spec in metrics:
        m = msg.metrics.add()
        for key, value in spec.items():
            if key == "unit":
                m.properties.keys.append("engUnit")
                pv = m.properties.values.add()
                pv.type = STRING
                pv.string_value = str(value)
            else:
                setattr(m, key, value)
    return msg.SerializeToString()


def nbirth(bd_seq: int = 7) -> bytes:
    return payload(
        0,
        [
            {"name": "bdSeq", "datatype": INT64, "long_value": bd_seq},
            {"name": "Node Control/Rebirth", "datatype": BOOLEAN, "boolean_value": False},
            {
                "name": "Inputs/Temperature",
                "alias": 1,
                "datatype": DOUBLE,
                "double_value": 21.5,
                "unit": "°C",
            },
            {"name": "Inputs/Pressure", "alias": 2, "datatype": FLOAT, "float_value": 1.5},
            {"name": "Outputs/Running", "alias": 3, "datatype": BOOLEAN, "boolean_value": True},
            {"name": "Counter", "alias": 4, "datatype": INT32, "int_value": 2**32 - 5},
            {"name": "Label", "alias": 5, "datatype": STRING, "string_value": "pump A"},
        ],
    )


TOPIC = "spBv1.0/plant1/{}/edge1"


def test_nbirth_learns_aliases_and_is_online_with_readings():
    aset = one("sparkplug")
    result = run(aset, TOPIC.format("NBIRTH"), nbirth())
    assert result.ok, result.errors
    [status] = result.status
    assert (status.site, status.device, status.online) == ("plant1", "edge1", True)
    got = rows(result)
    assert got == {
        ("Inputs", "temperature"): 21.5,
        ("Inputs", "pressure"): 1.5,
        ("Outputs", "running"): 1.0,
        ("sparkplug", "counter"): -5.0,  # Int32 two's complement in the uint32 field
    }
    assert units(result)[("Inputs", "temperature")] == "°C"
    assert result.skipped == 3  # bdSeq, Node Control/Rebirth, the string
    [tel] = result.telemetry
    assert all(t == T_MS * 1000 for t in tel.t_us)


def test_ndata_by_alias_uses_the_birth_names_and_units():
    aset = one("sparkplug")
    run(aset, TOPIC.format("NBIRTH"), nbirth())
    result = run(aset, TOPIC.format("NDATA"), payload(1, [{"alias": 1, "double_value": 22.0}]))
    assert result.ok
    assert not result.commands
    assert rows(result) == {("Inputs", "temperature"): 22.0}
    assert units(result)[("Inputs", "temperature")] == "°C"


def test_data_before_any_birth_is_an_unknown_alias_dead_letter_and_a_rebirth():
    aset = one("sparkplug")
    result = run(aset, TOPIC.format("NDATA"), payload(5, [{"alias": 1, "double_value": 22.0}]))
    [error] = result.errors
    assert error.reason.value == "adapter_error"
    assert "unknown_alias" in error.text
    assert "'sparkplug'" in error.text
    [command] = result.commands
    assert command.topic == "spBv1.0/plant1/NCMD/edge1"
    assert command.qos == 0
    ncmd = pb.Payload.FromString(command.payload)
    assert [(m.name, m.boolean_value) for m in ncmd.metrics] == [("Node Control/Rebirth", True)]
    assert not result.telemetry


def test_data_with_names_before_birth_is_read_and_asks_for_a_rebirth():
    aset = one("sparkplug")
    data = payload(9, [{"name": "Inputs/Temperature", "datatype": DOUBLE, "double_value": 20.0}])
    result = run(aset, TOPIC.format("NDATA"), data)
    assert result.ok
    assert rows(result) == {("Inputs", "temperature"): 20.0}
    assert len(result.commands) == 1


def test_seq_gap_is_counted_and_rebirth_is_rate_limited():
    aset = one("sparkplug", rebirth_min_interval_s=10)
    adapter = aset.adapters[0]
    assert isinstance(adapter, SparkplugAdapter)
    run(aset, TOPIC.format("NBIRTH"), nbirth())
    assert not run(
        aset, TOPIC.format("NDATA"), payload(1, [{"alias": 1, "double_value": 1.0}])
    ).commands
    gap = run(aset, TOPIC.format("NDATA"), payload(5, [{"alias": 1, "double_value": 2.0}]))
    assert rows(gap) == {("Inputs", "temperature"): 2.0}  # the values are still good
    assert len(gap.commands) == 1
    assert "seq gap" in gap.commands[0].reason
    again = run(
        aset, TOPIC.format("NDATA"), payload(9, [{"alias": 1, "double_value": 3.0}]), NOW + 1
    )
    assert not again.commands  # within rebirth_min_interval_s
    later = run(
        aset,
        TOPIC.format("NDATA"),
        payload(20, [{"alias": 1, "double_value": 4.0}]),
        NOW + 11_000_000,
    )
    assert len(later.commands) == 1
    assert adapter.nodes["plant1/edge1"].gaps == 3


def test_seq_wraps_from_255_to_0_and_a_repeat_is_a_redelivery_not_a_gap():
    aset = one("sparkplug")
    run(aset, TOPIC.format("NBIRTH"), nbirth())
    seqs = [*range(1, 256), 0, 1]
    for seq in seqs:
        result = run(aset, TOPIC.format("NDATA"), payload(seq, [{"alias": 1, "double_value": 1.0}]))
        assert not result.commands, seq
    repeat = run(aset, TOPIC.format("NDATA"), payload(1, [{"alias": 1, "double_value": 1.0}]))
    assert not repeat.commands
    assert "redelivery" in repeat.notes[0]


def test_redelivered_message_has_the_same_sequence_and_event_id():
    aset = one("sparkplug")
    run(aset, TOPIC.format("NBIRTH"), nbirth())
    data = payload(1, [{"alias": 1, "double_value": 1.0}])
    first = run(aset, TOPIC.format("NDATA"), data).telemetry[0]
    second = run(aset, TOPIC.format("NDATA"), data, NOW + 30_000_000).telemetry[0]
    assert (first.sequence, first.event_id) == (second.sequence, second.event_id)
    # the low bits are bdSeq (7) and seq (1); the high bits the payload's milliseconds
    assert first.sequence == (T_MS << 20) | (7 << 8) | 1


def test_ndeath_with_the_sessions_bdseq_takes_node_and_devices_offline():
    aset = one("sparkplug")
    run(aset, TOPIC.format("NBIRTH"), nbirth(bd_seq=7))
    dbirth = payload(1, [{"name": "Temp", "alias": 10, "datatype": DOUBLE, "double_value": 5.0}])
    result = run(aset, "spBv1.0/plant1/DBIRTH/edge1/pump-3", dbirth)
    assert [(s.device, s.online) for s in result.status] == [("edge1.pump-3", True)]
    assert rows(result) == {("sparkplug", "temperature"): 5.0}
    ddata = run(
        aset, "spBv1.0/plant1/DDATA/edge1/pump-3", payload(2, [{"alias": 10, "double_value": 6.0}])
    )
    assert rows(ddata) == {("sparkplug", "temperature"): 6.0}
    assert ddata.telemetry[0].device == "edge1.pump-3"
    stale = run(
        aset, TOPIC.format("NDEATH"), payload(None, [{"name": "bdSeq", "long_value": 6}], ts=None)
    )
    assert not stale.status
    assert "stale NDEATH" in (stale.ignored or "")
    death = run(
        aset, TOPIC.format("NDEATH"), payload(None, [{"name": "bdSeq", "long_value": 7}], ts=None)
    )
    assert sorted((s.device, s.online) for s in death.status) == [
        ("edge1", False),
        ("edge1.pump-3", False),
    ]


def test_ddeath_takes_one_device_offline():
    aset = one("sparkplug")
    run(aset, TOPIC.format("NBIRTH"), nbirth())
    run(
        aset,
        "spBv1.0/plant1/DBIRTH/edge1/d1",
        payload(1, [{"name": "x", "alias": 9, "double_value": 1.0}]),
    )
    result = run(aset, "spBv1.0/plant1/DDEATH/edge1/d1", payload(2, []))
    assert [(s.device, s.online) for s in result.status] == [("edge1.d1", False)]


def test_datasets_templates_bytes_and_nulls_are_skipped_and_counted():
    aset = one("sparkplug")
    run(aset, TOPIC.format("NBIRTH"), nbirth())
    result = run(
        aset,
        TOPIC.format("NDATA"),
        payload(
            1,
            [
                {"name": "Table", "datatype": 16, "dataset_value": b"\x08\x01"},
                {"name": "Tpl", "datatype": 19, "template_value": b"\x0a\x01x"},
                {"name": "Blob", "datatype": 17, "bytes_value": b"\x00"},
                {"alias": 1, "is_null": True, "datatype": DOUBLE},
                {"alias": 2, "float_value": 2.5},
            ],
        ),
    )
    assert result.ok
    assert rows(result) == {("Inputs", "pressure"): 2.5}
    assert result.skipped == 4


def test_not_protobuf_is_an_adapter_error():
    result = run(one("sparkplug"), TOPIC.format("NDATA"), b"\xff\xff\xff")
    [error] = result.errors
    assert "not a Sparkplug B protobuf" in error.text


def test_state_survives_snapshot_and_restore():
    aset = one("sparkplug")
    run(aset, TOPIC.format("NBIRTH"), nbirth())
    state = aset.snapshot()
    fresh = one("sparkplug")
    fresh.restore(state)
    result = run(fresh, TOPIC.format("NDATA"), payload(1, [{"alias": 1, "double_value": 9.0}]))
    assert result.ok
    assert not result.commands
    assert rows(result) == {("Inputs", "temperature"): 9.0}


def test_the_simulators_encoder_and_the_generated_decoder_agree():
    # Two independent writers of the wire format: simulators/dialects.py by hand, and
    # the protobuf runtime with the generated code.
    birth = sparkplug_payload(
        T_MS,
        [
            sparkplug_metric(name="bdSeq", datatype=INT64, long=3),
            sparkplug_metric(
                name="env/temperature", alias=1, datatype=DOUBLE, double=-1.25, unit="degC"
            ),
        ],
        0,
    )
    msg = pb.Payload.FromString(birth)
    assert (msg.timestamp, msg.seq) == (T_MS, 0)
    assert msg.metrics[1].double_value == -1.25
    assert msg.metrics[1].alias == 1
    assert msg.metrics[1].properties.values[0].string_value == "degC"
    aset = one("sparkplug", site_from_group=False, site="factory")
    result = run(aset, TOPIC.format("NBIRTH"), birth)
    assert rows(result) == {("env", "temperature"): -1.25}
    assert result.telemetry[0].site == "factory"


def test_filters_are_not_shared_and_route_by_edge_node():
    aset = one("sparkplug", groups=["plant1"])
    assert all(not f.shared for _, f in aset.filters())
    assert aset.route_key("spBv1.0/plant1/DDATA/edge1/pump") == "sparkplug:plant1/edge1"
    assert aset.route_key("spBv1.0/plant1/NDATA/edge1") == "sparkplug:plant1/edge1"
    assert aset.route_key("spBv1.0/plant2/NDATA/edge1") is None
    assert aset.route_key("spBv1.0/STATE/host") is None
