-- Outbound engine (issue 6): mailboxes, campaigns and their steps, enrolments, the send queue,
-- received mail and pending unsubscribe requests. Applied after the core schema (0001).
-- Encrypted columns hold pgp_sym_encrypt() output under the data key (bytea); nothing here
-- indexes a decrypted value. Message bodies live in the core's `messages` table (encrypted);
-- rows here point at them. Message-IDs are `<token@domain>` with a random token: only the token
-- (random, not personal) is stored in clear, which is what replies and the Sent folder match on.

CREATE TABLE mailboxes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    label text NOT NULL,
    from_address bytea NOT NULL,
    username bytea NOT NULL,
    secret_id bigint NOT NULL REFERENCES keychain ON DELETE RESTRICT,
    auth text NOT NULL DEFAULT 'password' CHECK (auth IN ('password', 'xoauth2')),
    smtp_host text NOT NULL,
    smtp_port integer NOT NULL CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security text NOT NULL CHECK (smtp_security IN ('ssl', 'starttls', 'none')),
    imap_host text NOT NULL,
    imap_port integer NOT NULL CHECK (imap_port BETWEEN 1 AND 65535),
    imap_security text NOT NULL CHECK (imap_security IN ('ssl', 'starttls', 'none')),
    sent_folder text NOT NULL DEFAULT 'Sent',
    -- 'provider': the provider files every submitted message in Sent (Gmail, Microsoft 365);
    -- 'append': the engine appends the copy itself after the server accepted the message.
    sent_copy text NOT NULL DEFAULT 'provider' CHECK (sent_copy IN ('provider', 'append')),
    daily_cap integer NOT NULL DEFAULT 50 CHECK (daily_cap >= 0),
    ramp_start integer NOT NULL DEFAULT 10 CHECK (ramp_start >= 0),
    ramp_step integer NOT NULL DEFAULT 5 CHECK (ramp_step >= 0),
    started_on date NOT NULL DEFAULT current_date,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped')),
    stop_reason text,
    inbox_uidvalidity bigint,
    inbox_last_uid bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The brand's postal address for the footer every message carries (CAN-SPAM, PECR).
CREATE TABLE brand_footers (
    brand_id bigint PRIMARY KEY REFERENCES brands ON DELETE CASCADE,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    postal_address bytea NOT NULL
);

CREATE TABLE campaigns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    brand_id bigint NOT NULL REFERENCES brands ON DELETE CASCADE,
    name text NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC',
    window_start time NOT NULL DEFAULT '09:00',
    window_end time NOT NULL DEFAULT '17:00',
    send_days smallint[] NOT NULL DEFAULT '{1,2,3,4,5}',
    ooo_default_days integer NOT NULL DEFAULT 7 CHECK (ooo_default_days > 0),
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'paused', 'stopped')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_steps (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    campaign_id bigint NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    position integer NOT NULL CHECK (position >= 1),
    delay_days integer NOT NULL DEFAULT 0 CHECK (delay_days >= 0),
    business_days boolean NOT NULL DEFAULT false,
    UNIQUE (campaign_id, position)
);

CREATE TABLE step_variants (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    step_id bigint NOT NULL REFERENCES campaign_steps ON DELETE CASCADE,
    label text NOT NULL,
    subject bytea NOT NULL,
    body bytea NOT NULL,
    UNIQUE (step_id, label)
);

CREATE TABLE enrollments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    campaign_id bigint NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    lead_id bigint NOT NULL REFERENCES leads ON DELETE CASCADE,
    mailbox_id bigint REFERENCES mailboxes ON DELETE SET NULL,
    timezone text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN (
        'active', 'paused', 'replied', 'bounced', 'unsubscribed', 'stopped', 'blocked',
        'completed')),
    status_reason text,
    next_position integer NOT NULL DEFAULT 1,
    due_at timestamptz NOT NULL DEFAULT now(),
    paused_until timestamptz,
    thread_root text,
    thread_tokens text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, lead_id)
);
CREATE INDEX enrollments_due ON enrollments (due_at) WHERE status IN ('active', 'paused');

-- The send queue. One row per (enrolment, step): the unique key is what makes a step go out at
-- most once; the state machine and the Sent-folder settlement make it go out exactly once.
CREATE TABLE outbound_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    enrollment_id bigint NOT NULL REFERENCES enrollments ON DELETE CASCADE,
    position integer NOT NULL,
    variant_id bigint REFERENCES step_variants ON DELETE SET NULL,
    mailbox_id bigint NOT NULL REFERENCES mailboxes ON DELETE CASCADE,
    message_row bigint REFERENCES messages ON DELETE SET NULL,
    raw bytea,  -- the exact bytes to send (encrypted): a retry sends what was planned
    token text NOT NULL UNIQUE,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN (
        'queued', 'sending', 'sent', 'retry', 'bounced', 'failed', 'suppressed', 'uncertain')),
    attempts integer NOT NULL DEFAULT 0,
    not_before timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    data_at timestamptz,  -- set just before SMTP DATA when the engine keeps the Sent copy itself
    smtp_code integer,
    last_error text,
    queued_on date NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    UNIQUE (enrollment_id, position)
);
CREATE INDEX outbound_messages_ready ON outbound_messages (not_before)
    WHERE state IN ('queued', 'retry');
CREATE INDEX outbound_messages_sending ON outbound_messages (lease_until) WHERE state = 'sending';
CREATE INDEX outbound_messages_mailbox_day ON outbound_messages (mailbox_id, queued_on);

-- Mail fetched from a connected mailbox and what it was classified as.
CREATE TABLE inbound_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    mailbox_id bigint NOT NULL REFERENCES mailboxes ON DELETE CASCADE,
    uid bigint NOT NULL,
    uidvalidity bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('reply', 'auto_reply', 'bounce', 'unsubscribe', 'other')),
    enrollment_id bigint REFERENCES enrollments ON DELETE SET NULL,
    message_row bigint REFERENCES messages ON DELETE SET NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mailbox_id, uidvalidity, uid)
);

-- One-click unsubscribes that arrived while the tenant was sealed: the opaque token only (it
-- holds no address), applied at the next unlock.
CREATE TABLE unsubscribe_inbox (
    token text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE mailboxes ENABLE ROW LEVEL SECURITY;
ALTER TABLE brand_footers ENABLE ROW LEVEL SECURITY;
ALTER TABLE campaigns ENABLE ROW LEVEL SECURITY;
ALTER TABLE campaign_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE step_variants ENABLE ROW LEVEL SECURITY;
ALTER TABLE enrollments ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbound_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE inbound_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_scope ON mailboxes
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON brand_footers
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON campaigns
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON campaign_steps
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON step_variants
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON enrollments
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON outbound_messages
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON inbound_messages
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());

GRANT SELECT, INSERT, UPDATE, DELETE ON mailboxes, brand_footers, campaigns, campaign_steps,
    step_variants, enrollments, outbound_messages, inbound_messages TO paitho_app;
GRANT SELECT, INSERT, DELETE ON unsubscribe_inbox TO paitho_app;
