"""The probe paths: every answer an ADC reads, each a snapshot read and a clock read.

* :mod:`app.probe.answer` words the answers: the ``/monitor`` line, its status,
  and the agent-check line.
* :mod:`app.probe.asgi` answers the HTTP probe routes in front of the JSON API,
  with no framework and no thread hop.
* :mod:`app.probe.agent` is HAProxy's agent-check responder (a TCP server).
* :mod:`app.probe.counts` counts the answers without a lock.
"""
