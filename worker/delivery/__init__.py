"""What is sent once the state has changed: each message is recorded first, sent after.

- ``outbox``: the administrators' reports, recorded with the change that caused them.
- ``customers``: the customers' invoice emails, drained from ``invoices``, paced, one
  sender at a time.
- ``webhooks``: the signed merchant webhooks, retried until a 2xx.

Each drains a due-row queue of ``worker.state`` (one backoff for all) through a
transport or endpoint of ``notifications``.
"""
