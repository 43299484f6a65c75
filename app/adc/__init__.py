"""Configs for the load balancers (ADCs) that probe ``/monitor``, and their timer arithmetic.

* :mod:`app.adc.model` parses the topology: the VIP and the nodes.
* :mod:`app.adc.timers` holds the worst-case failover and overlap formulas.
* :mod:`app.adc.haproxy`, :mod:`app.adc.f5` and :mod:`app.adc.nginx` render configs.
* :mod:`app.adc.runtime` reads HAProxy's stats socket.
* :mod:`app.adc.cli` adds the ``adc-config`` and ``demo`` subcommands.
"""
