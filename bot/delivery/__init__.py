"""Getting outbox rows to people: the sender contract, the delivery worker, rate limits."""
