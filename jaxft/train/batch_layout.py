"""How a step's rows are laid out over devices and micro-steps: one definition for the loop and the planner.

`global_batch_size` counts examples per step; rows are what the devices see. The step has `rows` rows
(a multiple of `row_multiple`), split over the batch shards (data x fsdp) and, with
`micro_batch_size` > 0 (rows per device per micro-step), accumulated over `accum` micro-steps.
`micro_batch_size` "auto" is picked once the rows are known (jaxft.train.auto): a divisor of the rows per
device, so "auto" asks the rows for no multiple beyond the shards.
"""

from __future__ import annotations

import dataclasses
import math

from jaxft.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    rows: int  # rows per optimizer step, all devices
    shards: int  # batch shards (data x fsdp)
    accum: int  # micro-steps per optimizer step
    micro_rows: int  # rows per device per micro-step


AUTO = "auto"


def row_multiple(micro_batch_size: int | str, shards: int, process_count: int = 1) -> int:
    """Rows per step must be a multiple of this."""
    if micro_batch_size == AUTO:
        micro_batch_size = 0
    if micro_batch_size < 0:
        raise ConfigError(f"config.micro_batch_size={micro_batch_size} must be >= 0 (0 = no accumulation)")
    unit = micro_batch_size * shards if micro_batch_size else shards
    return unit * process_count // math.gcd(unit, process_count)


def layout(rows: int, micro_batch_size: int | str, shards: int) -> BatchLayout:
    if micro_batch_size == AUTO:
        raise ConfigError("config.micro_batch_size='auto' must be resolved first (jaxft.train.auto.resolve)")
    unit = row_multiple(micro_batch_size, shards)
    if rows % unit:
        raise ConfigError(f"{rows} rows per step are not a multiple of micro_batch_size x batch shards = {unit}")
    accum = rows // (micro_batch_size * shards) if micro_batch_size else 1
    return BatchLayout(rows=rows, shards=shards, accum=accum, micro_rows=rows // accum // shards)


def configured_rows(c) -> int:
    """`data.rows_per_step` (0 = the data decides; configs written before the key existed read as 0)."""
    return int(c.data.get("rows_per_step", 0) or 0)


def planned_rows(c, shards: int) -> int:
    """Rows per step when no data is at hand (the planner): `data.rows_per_step` if set, else one row per
    example, the most packing can ever need."""
    rows = configured_rows(c) or int(c.global_batch_size)
    unit = row_multiple(c.micro_batch_size, shards)
    return -(-rows // unit) * unit


# What the train step is fed per row: the data pipeline's batch less its "example" ids.
STEP_FIELDS = {"input_ids": "int32", "targets": "int32", "positions": "int32", "segment_ids": "int32",
               "loss_mask": "float32"}


def step_shape(lay: BatchLayout, seq_len: int) -> tuple[int, ...]:
    """The global shape of each field the step gets: [accum, rows / accum, seq] when it accumulates."""
    if lay.accum > 1:
        return (lay.accum, lay.rows // lay.accum, seq_len)
    return (lay.rows, seq_len)


def for_step(batch: dict, lay: BatchLayout) -> dict:
    """A step's rows (this process's share) as the step takes them: only its fields, split into micro-steps."""
    out = {k: batch[k] for k in STEP_FIELDS}
    if lay.accum > 1:
        out = {k: v.reshape(lay.accum, -1, *v.shape[1:]) for k, v in out.items()}
    return out
