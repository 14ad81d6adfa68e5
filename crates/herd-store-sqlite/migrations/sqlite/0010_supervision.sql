-- A task's latest supervision state as its agent reported it (JSON text of
-- herd_core::supervise::Supervision: state, class, prompt, secret, reason); NULL: none yet.
ALTER TABLE tasks ADD COLUMN supervision TEXT NULL;
