-- API key names are unique: `herd keys revoke NAME` names one key. Keys that share a name
-- keep it on the oldest; the others get `-2`, `-3`, … in order of creation.
UPDATE api_keys AS k SET name = k.name || '-' || d.n
FROM (SELECT id, row_number() OVER (PARTITION BY name ORDER BY created_at, id) AS n FROM api_keys) AS d
WHERE k.id = d.id AND d.n > 1;

CREATE UNIQUE INDEX api_keys_name ON api_keys (name);
