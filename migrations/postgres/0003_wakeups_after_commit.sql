-- Appends no longer notify inside their transaction: PostgreSQL serialises the commits of
-- notifying transactions, so a trigger notifying in every append made concurrent appends wait
-- for each other. The writing process now wakes its own runners in process and tells other
-- processes after the commit, at most once every few milliseconds, with a statement of its own
-- (`SELECT pg_notify('ledger_events', '')`); runners still LISTEN on `ledger_events` and poll.
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS events_notify();
