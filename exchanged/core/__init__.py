"""The pure core: values, rules and state machines with no file, network, subprocess or
clock access. Everything here is a function of its arguments, so it is unit-tested
without fixtures. ``tests/unit/test_core_purity.py`` enforces the boundary."""
