-- The PostgreSQL migration of this number removes a trigger that notified other processes
-- inside every append. SQLite never had it: another process's commit is seen by watching
-- `PRAGMA data_version`. Kept so that both backends count the same schema versions.
SELECT 1;
