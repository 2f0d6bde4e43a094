"""The care program's rules and records, shared by the dialogs and the scheduled jobs.

Arrows point one way: `bot → dialogs → domain → storage`. Dialogs ask this package for what they
need (households in scope, record a visit, open a follow-up, queue a message) and never hold the
ORM session; the scheduler's jobs call the same functions, so each rule is written once.
"""
