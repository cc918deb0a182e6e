-- Actors that two copies of one store (a restored backup, a cloned phone) both wrote under.
-- The server cannot tell the copies apart while they share an actor, so once it sees the
-- collision no replica may sync with that actor: each copy takes a fresh one (bound to the
-- same device) and pulls again, receiving what the other copy wrote under the old actor.
CREATE TABLE retired_actors (
    actor      TEXT PRIMARY KEY NOT NULL,
    device     TEXT NOT NULL,
    retired_at BIGINT NOT NULL
);
