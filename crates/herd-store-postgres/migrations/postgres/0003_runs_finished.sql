-- Retention looks up finished runs by when they finished (oldest first).
CREATE INDEX runs_finished ON runs(finished_at) WHERE finished_at IS NOT NULL;
