"""``sensorgate bench-cluster`` arithmetic and table, on made-up figures."""

from __future__ import annotations

from gateway.bench.scaling_cli import _table
from gateway.bench.scaling_results import ProcessFigures, ScalingRound, summarize_scaling


def _round(n: int, round_no: int, cpu: list[float], decoded: list[int]) -> ScalingRound:
    stored = 1_000
    return ScalingRound(
        processes=n,
        round=round_no,
        expected=1_000,
        stored=stored,
        seconds=2.0,
        readings_per_s=500.0,
        gateway_cpu_s=sum(cpu),
        influxd_cpu_s=0.004,
        mosquitto_cpu_s=0.001,
        per_process=[
            ProcessFigures(
                index=i,
                cpu_s=cpu[i],
                received_messages=10,
                decoded_messages=decoded[i] // 50,
                decoded_readings=decoded[i],
                stored=stored,
                idle_cpu_share=0.03,
            )
            for i in range(n)
        ],
    )


def test_per_reading_figures_and_shares() -> None:
    r = _round(2, 1, cpu=[0.010, 0.006], decoded=[750, 250])
    assert r.gateway_cpu_us_per_reading == 16.0
    assert r.per_process[0].cpu_us_per_reading == 10.0
    assert r.per_process[0].cpu_us_per_decoded_reading == 13.33
    assert r.per_process[1].cpu_us_per_decoded_reading == 24.0
    doc = r.as_dict()
    assert doc["gateway_cpu_us_per_reading"] == 16.0
    assert doc["per_process"][1]["cpu_us_per_reading"] == 6.0


def test_summaries_take_medians_per_process_count_and_sum_the_losses() -> None:
    rounds = [
        _round(1, 1, [0.007], [1_000]),
        _round(1, 2, [0.009], [1_000]),
        _round(1, 3, [0.008], [1_000]),
        _round(2, 1, [0.010, 0.006], [750, 250]),
    ]
    rounds[1].stored = 990
    summaries = summarize_scaling(rounds)
    one, two = summaries
    assert one["processes"] == 1
    assert one["rounds"] == 3
    assert one["lost"] == 10
    assert one["gateway_cpu_us_per_reading"]["median"] == 8.0
    assert one["gateway_cpu_us_per_reading"]["min"] == 7.0
    assert two["per_process"][0]["decoded_share"]["median"] == 0.75
    assert two["per_process"][1]["received_share"]["median"] == 0.5
    assert two["per_process"][0]["idle_cpu_share"]["median"] == 0.03


def test_failed_rounds_are_counted_not_averaged() -> None:
    bad = ScalingRound(processes=3, round=1, expected=1_000, error="boom", outcome="failed")
    (summary,) = summarize_scaling([bad])
    assert summary["failed"] == 1
    assert summary["lost"] == 1_000
    assert summary["readings_per_s"]["median"] is None


def test_the_table_has_a_row_per_process_count() -> None:
    doc = {
        "workload": {"total": 1_000},
        "rounds": 1,
        "machine": {"cpus": 2},
        "summaries": summarize_scaling(
            [_round(1, 1, [0.008], [1_000]), _round(2, 1, [0.01, 0.006], [750, 250])]
        ),
    }
    lines = _table(doc).splitlines()
    assert lines[2].startswith("1 | 0 | 500 | 8.00")
    assert lines[3].startswith("2 | 0 | 500 | 16.00")
    assert "p1 0.030; 6.00; 24.00 [0.50 / 0.25]" in lines[3]
