-- Version 2: what several nodes need to know of each other.

-- Every node's heartbeat: a node not seen for a while is gone, and so are its connections.
CREATE TABLE nodes (
    node text PRIMARY KEY,
    seen_at bigint NOT NULL
);

-- Which visitors have a chat open on which node (for /admin/handoffs and a person's answers).
CREATE TABLE connected (
    visitor text COLLATE "C" NOT NULL,
    node text NOT NULL,
    PRIMARY KEY (visitor, node)
);

-- What a person wrote in /admin to a shopper whose chat is on another node. The writing node
-- sends `NOTIFY nudge_agent` with the row's id; the node holding the chat reads the row. Rows
-- are removed a few minutes later.
CREATE TABLE agent_messages (
    id bigserial PRIMARY KEY,
    visitor text COLLATE "C" NOT NULL,
    text text NOT NULL,
    at bigint NOT NULL
);
