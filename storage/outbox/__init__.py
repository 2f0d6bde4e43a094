"""The outbox: the one package that writes, claims and records outbound messages.

Every message Warmline sends is first a row here, written in the same transaction as the change
that caused it (a step's replies, an alert, a reminder, a greeting, an invitation). Who a
message goes to — a person's preferred address, a family member's chosen channel, or channel
"none" (unrouted) until the person links an address — is decided here and nowhere else.

Order and priority, the two rules the senders rely on:
- **first in, first out per address**: a row is not claimed while an earlier row to the same
  (channel, address) is still pending — queued and due, waiting out a retry, or being sent —
  so a later message never overtakes an earlier one, across the fast path and every worker;
- **lanes**: replies to what someone just typed (INTERACTIVE) are claimed before alerts
  (ALERT), and those before county-wide sends (BULK); a reply stuck behind an earlier message
  lifts that message into its own lane, so it is never queued behind a broadcast.

Claims and heartbeats are stamped with the wall clock (keep the hosts in sync with NTP), never
the program's clock, which a training session may move (WARMLINE_NOW).
"""

from storage.outbox.claiming import (
    Claim,
    claim_ahead,
    claim_batch,
    claim_next,
    earlier_pending,
    end_lease,
    expire_due,
    heartbeat,
    lift,
    next_due,
    release,
    release_dead,
)
from storage.outbox.common import (
    NO_ADDRESS_NOTE,
    PENDING,
    SMS,
    UNROUTED,
    FastPath,
    Recipient,
    fast_path,
    lane_of,
    this_process,
)
from storage.outbox.recording import (
    FINISHED,
    apurge_delivered_bodies,
    cancel_failed,
    mark_sent,
    purge_delivered_bodies,
    purge_statement,
    record_erased,
    record_final,
    record_receipt,
    record_retry,
    record_sent,
    retry_failed,
)
from storage.outbox.routing import (
    QUIET_KINDS,
    person_recipient,
    preferred_address,
    preferred_addresses,
    route_waiting,
)
from storage.outbox.writing import (
    SLICE,
    Queued,
    cancel_queued,
    enqueue,
    enqueue_claimed,
    enqueue_many,
    fail_queued_to,
)

__all__ = [
    "FINISHED",
    "NO_ADDRESS_NOTE",
    "PENDING",
    "QUIET_KINDS",
    "SLICE",
    "SMS",
    "UNROUTED",
    "Claim",
    "FastPath",
    "Queued",
    "Recipient",
    "apurge_delivered_bodies",
    "cancel_failed",
    "cancel_queued",
    "claim_ahead",
    "claim_batch",
    "claim_next",
    "earlier_pending",
    "end_lease",
    "enqueue",
    "enqueue_claimed",
    "enqueue_many",
    "expire_due",
    "fail_queued_to",
    "fast_path",
    "heartbeat",
    "lane_of",
    "lift",
    "mark_sent",
    "next_due",
    "person_recipient",
    "preferred_address",
    "preferred_addresses",
    "purge_delivered_bodies",
    "purge_statement",
    "record_erased",
    "record_final",
    "record_receipt",
    "record_retry",
    "record_sent",
    "release",
    "release_dead",
    "retry_failed",
    "route_waiting",
    "this_process",
]
