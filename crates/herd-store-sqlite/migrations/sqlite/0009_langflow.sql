-- LangFlow sources (URL and sealed API key) and the flows a sync listed on each. A flow no
-- longer listed upstream keeps its row with `removed_at`.
CREATE TABLE langflow_sources (
    name       TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    key_sealed TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    synced_at  INTEGER
);

CREATE TABLE langflows (
    source        TEXT NOT NULL REFERENCES langflow_sources(name) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    endpoint_name TEXT,
    updated_at    TEXT,
    summary       TEXT NOT NULL,
    removed_at    INTEGER,
    synced_at     INTEGER NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE INDEX langflows_name ON langflows(name);
