-- The labels a join token lets its agents hold (JSON object; a value "*" allows any value of
-- its key); NULL lets them hold any, as every token made before this did.
ALTER TABLE join_tokens ADD COLUMN labels TEXT;
-- The labels of the token an agent joined with, copied at join; NULL: any (agents that
-- joined before tokens carried labels keep what they had).
ALTER TABLE agents ADD COLUMN allowed_labels TEXT;
