"""Interim per-row encoder (replaced by the vectorised one once it lands)."""

from __future__ import annotations

from dataflows.columns import PointColumns
from gateway.influx.lineprotocol import escape_tag, field_string


def _tags(names, s: int) -> str:
    return (
        f"device={escape_tag(names.device[s])},metric={escape_tag(names.metric[s])}"
        f",sensor={escape_tag(names.sensor[s])},site={escape_tag(names.site[s])}"
    )


class InterimEncoder:
    """Line protocol, precision nanoseconds, one Python f-string per row."""

    def encode(self, points: PointColumns) -> bytes:
        names = points.names
        lines = []
        r = points.readings
        if r is not None:
            faults = r.faults or {}
            for i, (s, t, v) in enumerate(zip(r.series.tolist(), r.t_us.tolist(), r.value.tolist(), strict=True)):
                field = f"fault={field_string(faults.get(i, ''))}" if v != v else f"value={v!r}"
                lines.append(f"readings,{_tags(names, s)} {field} {t * 1000}")
        a = points.aggregates
        if a is not None:
            for i in range(len(a)):
                s = int(a.series[i])
                sd = float(a.stddev[i])
                std = "" if sd != sd else f",stddev={sd!r}"
                lines.append(
                    f"aggregates,{_tags(names, s)},window={escape_tag(a.window_names[int(a.window[i])])}"
                    f" count={int(a.count[i])}i,mean={float(a.mean[i])!r},min={float(a.min[i])!r}"
                    f",max={float(a.max[i])!r}{std},first={float(a.first[i])!r},last={float(a.last[i])!r}"
                    f" {int(a.start_us[i]) * 1000}"
                )
        late = points.late
        if late is not None:
            for i in range(len(late)):
                s = int(late.series[i])
                lines.append(
                    f"late_readings,{_tags(names, s)} value={float(late.value[i])!r},seq={int(late.seq[i])}i"
                    f",watermark={int(late.watermark_us[i]) * 1000}i,event_id={field_string(late.event_id[i])}"
                    f" {int(late.t_us[i]) * 1000}"
                )
        return ("\n".join(lines) + "\n").encode() if lines else b""
