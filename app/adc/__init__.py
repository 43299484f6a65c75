"""Configs for the load balancers (ADCs) that probe ``/monitor``, and their timer arithmetic.

* :mod:`app.adc.model` parses the topology: the VIP and the nodes.
* :mod:`app.adc.timers` holds the worst-case failover and overlap formulas.
* :mod:`app.adc.haproxy`, :mod:`app.adc.f5` and :mod:`app.adc.nginx` render configs.
* :mod:`app.adc.runtime` reads HAProxy's stats socket.
* The ``adc-config`` command that prints them is :mod:`app.cli.adc`, outside this package.
"""
