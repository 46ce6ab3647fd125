-- Version 3: how often each proactive trigger was shown, by teaser variant.
CREATE TABLE triggers_shown (
    trigger text COLLATE "C" NOT NULL,
    variant integer NOT NULL,
    shown bigint NOT NULL,
    PRIMARY KEY (trigger, variant)
);
