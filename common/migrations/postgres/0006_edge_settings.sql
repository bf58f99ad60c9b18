-- edge: settings every replica shares, e.g. the JWT signing key generated on
-- first start when none is configured.
CREATE TABLE edge_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
