-- What a task wrote to HERD_OUTPUT, stored with its exit (secrets masked by the agent).
ALTER TABLE tasks ADD COLUMN outputs TEXT NULL;
