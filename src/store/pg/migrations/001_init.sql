-- Nudge's PostgreSQL schema, version 1. Ids are the lowercase hex of Nudge's 16-byte ids,
-- time first, in the "C" collation so that they sort as their bytes do (a transcript in order,
-- the newest conversation last). Profiles, conversations, follow-ups and orders are the domain
-- types' JSON; what a query filters or sorts by is a column beside it.

CREATE TABLE visitors (
    id text COLLATE "C" PRIMARY KEY,
    status smallint NOT NULL,
    campaign text COLLATE "C",
    last_seen_at bigint NOT NULL,
    profile jsonb NOT NULL
);
CREATE INDEX visitors_by_last_seen ON visitors (last_seen_at DESC, id DESC);
CREATE INDEX visitors_by_status ON visitors (status, id);
CREATE INDEX visitors_by_campaign ON visitors (campaign, id);

-- Normalized address -> the visitor it belongs to.
CREATE TABLE emails (
    email text COLLATE "C" PRIMARY KEY,
    visitor text COLLATE "C" NOT NULL
);
CREATE INDEX emails_by_visitor ON emails (visitor);

-- Tombstones of erased visitors: the id and when, nothing personal.
CREATE TABLE erased (
    visitor text COLLATE "C" PRIMARY KEY,
    at bigint NOT NULL
);

CREATE TABLE conversations (
    id text COLLATE "C" PRIMARY KEY,
    visitor text COLLATE "C" NOT NULL,
    started_at bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX conversations_by_visitor ON conversations (visitor, id);

-- One row per turn, keyed by the session's turn id: appending is idempotent.
CREATE TABLE turns (
    conversation text COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    turn text COLLATE "C" NOT NULL,
    last_at bigint NOT NULL,
    entries jsonb NOT NULL,
    PRIMARY KEY (conversation, turn)
);

-- The shop's orders; the primary key makes a conversion idempotent by order id.
CREATE TABLE orders (
    id text COLLATE "C" PRIMARY KEY,
    visitor text COLLATE "C" NOT NULL,
    body jsonb NOT NULL
);

-- Follow-ups. `pending` rows are due at `due_at`; a node running one holds it until
-- `lease_until` (`lease_owner` names the node). One pending job per visitor and job key.
CREATE TABLE outbox (
    id text COLLATE "C" PRIMARY KEY,
    visitor text COLLATE "C" NOT NULL,
    job_key text COLLATE "C" NOT NULL,
    pending boolean NOT NULL,
    due_at bigint NOT NULL,
    lease_owner text,
    lease_until bigint,
    body jsonb NOT NULL
);
CREATE UNIQUE INDEX outbox_one_pending_job ON outbox (visitor, job_key) WHERE pending;
CREATE INDEX outbox_due ON outbox (due_at, id) WHERE pending;
CREATE INDEX outbox_by_visitor ON outbox (visitor);

-- First open (0) and first click (1) of a sent email.
CREATE TABLE email_events (
    item text COLLATE "C" NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    event smallint NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (item, event)
);

CREATE TABLE admin_sessions (
    id text COLLATE "C" PRIMARY KEY,
    expires_at bigint NOT NULL
);

-- Hashes of email links that were used, until their tokens expire.
CREATE TABLE spent_links (
    link bytea PRIMARY KEY,
    expires_at bigint NOT NULL
);

CREATE TABLE spend (
    date text COLLATE "C" NOT NULL,
    campaign text COLLATE "C" NOT NULL,
    platform text COLLATE "C" NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (date, campaign, platform)
);

-- What every node must share: signing keys, API keys, the admin password hash.
CREATE TABLE secrets (
    name text PRIMARY KEY,
    value text NOT NULL
);
