"""The processes: what ``run``, ``watch`` and ``worker`` start, in order, and stop.

- ``run``: the parts (state, Redis, broker, actors) and the main loop.
- ``redis``: an external Redis URL, or a real redis-server embedded under ``var/``.
- ``broker``: the dramatiq RedisBroker, installed before any actor.
- ``actors``: thin actors over the pipeline and delivery; messages carry ids.
- ``processes``: the other worker processes; ``signals``: a clean stop at any moment.
"""
