from gateway.influx.rejections import measurement_of


def test_measurement_of_reads_escaped_names() -> None:
    assert measurement_of("readings,device=a v=1 1") == "readings"
    assert measurement_of(r"my\ m\,x,t=1 v=1") == r"my\ m\,x"
    assert measurement_of("deadletters v=1") == "deadletters"
    assert measurement_of(" v=1") == "?"
