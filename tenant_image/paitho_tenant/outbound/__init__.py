"""The outbound engine (issue 6): mailboxes, sequences, exactly-once sending, receiving,
classification of replies, bounces and auto-replies, one-click unsubscribe, guard rails.

Pure modules (no I/O): templating, schedule, classify, quotes, tokens, compose.
Database and network: store, mailbox, queue, sender, receiver, guardrails, web.
"""
