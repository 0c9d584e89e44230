"""The measurement engine: what a model variant costs on a device, measured here or estimated.

- ``profiles``: hardware profiles (``profiles/*.toml``), the devices found here, and the target
  of a profiling call (a device here, or a profile's figures);
- ``variants``: fp32/fp16/bf16 casts and 8/4-bit quantized variants of any model, pruned or not;
- ``timing``, ``memory``, ``measure``: timing until stable, peak memory, one measured point;
- ``estimate``: the roofline estimate of a point on hardware that is not here;
- ``subject``: what a measurement is of (a model, its exact counts and its content key);
- ``store``: the profile row (one definition of latency and memory) and its resumable table.

The search's latency and memory objectives use this room; profiling a whole run
(``prunebench.profiling``) loops over it.
"""
