-- A schedule edited in place: each edit counts one more revision, and a fire is written only
-- while the revision it was planned under is still the schedule's (a fire of the definition
-- before an edit never starts after the edit).
ALTER TABLE schedules ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
