-- Paitho tenant schema, version 1. Applied by the owner role (paitho_owner); the app connects
-- as paitho_app, which gets only the privileges granted at the end of this file.
-- Encrypted columns hold pgp_sym_encrypt() output (bytea); *_bidx columns hold HMAC-SHA256
-- blind indexes computed by the app. Nothing here indexes a decrypted value.

CREATE FUNCTION current_workspace() RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('paitho.workspace_id', true), '')::bigint $$;

CREATE TABLE vault (
    id smallint PRIMARY KEY CHECK (id = 1),
    wrapped_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz
);

CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email_bidx bytea NOT NULL UNIQUE,
    email bytea NOT NULL,
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'member')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspaces (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    region text NOT NULL CHECK (region IN ('eu', 'us')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE brands (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    name text NOT NULL,
    sending_identity bytea,
    voice bytea,
    icp bytea,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    email_bidx bytea NOT NULL,
    email bytea NOT NULL,
    profile bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, email_bidx)
);

CREATE TABLE keychain (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('openai', 'anthropic', 'google', 'openai_compatible',
                                       'smtp', 'imap', 'enrichment')),
    label text NOT NULL,
    secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    lead_id bigint REFERENCES leads ON DELETE CASCADE,
    direction text NOT NULL CHECK (direction IN ('sent', 'received')),
    headers bytea NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One key per period (ISO week). Deleting a row crypto-shreds that period's stage runs.
CREATE TABLE period_keys (
    period_start date PRIMARY KEY,
    wrapped_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stage_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    lead_id bigint REFERENCES leads ON DELETE CASCADE,
    stage text NOT NULL CHECK (stage IN ('qualify', 'draft', 'audit')),
    model text NOT NULL,
    input_tokens integer NOT NULL CHECK (input_tokens >= 0),
    output_tokens integer NOT NULL CHECK (output_tokens >= 0),
    started_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    period_start date NOT NULL,
    prompt bytea,
    response bytea
);

CREATE TABLE suppression (
    email_bidx bytea PRIMARY KEY,
    reason text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dsar_requests (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('access', 'erasure')),
    subject_bidx bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    due_at timestamptz NOT NULL DEFAULT now() + interval '30 days',
    completed_at timestamptz,
    rows_affected integer
);

-- Row-level security: workspace-scoped tables show and accept only the current workspace's
-- rows (set per transaction with set_config('paitho.workspace_id', ..., true)).
ALTER TABLE brands ENABLE ROW LEVEL SECURITY;
ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
ALTER TABLE keychain ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE stage_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_scope ON brands
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON leads
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON keychain
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON messages
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON stage_runs
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());

-- Audit log: append-only, hash-chained. The chain head is locked per insert (serialised).
CREATE TABLE audit_log (
    seq bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash bytea NOT NULL,
    row_hash bytea NOT NULL
);

CREATE TABLE audit_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_row_hash(prev bytea, at timestamptz, actor text, action text, detail jsonb)
    RETURNS bytea LANGUAGE sql STABLE SET search_path = public
    AS $$
        SELECT digest(prev || convert_to(concat_ws(E'\x1f',
            to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            actor, action, detail::text), 'UTF8'), 'sha256')
    $$;

CREATE FUNCTION audit_chain() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
    DECLARE
        head audit_head%ROWTYPE;
    BEGIN
        SELECT * INTO head FROM audit_head WHERE id = 1 FOR UPDATE;
        NEW.seq := head.seq + 1;
        NEW.at := clock_timestamp();
        NEW.prev_hash := head.hash;
        NEW.row_hash := audit_row_hash(NEW.prev_hash, NEW.at, NEW.actor, NEW.action, NEW.detail);
        UPDATE audit_head SET seq = NEW.seq, hash = NEW.row_hash WHERE id = 1;
        RETURN NEW;
    END
    $$;

CREATE FUNCTION audit_reject() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$;

CREATE TRIGGER audit_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain();
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_reject();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject();

-- Least privilege for the app role.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO paitho_app;
GRANT SELECT, INSERT, UPDATE ON vault TO paitho_app;
GRANT SELECT, INSERT, UPDATE ON accounts TO paitho_app;
GRANT SELECT, INSERT ON workspaces TO paitho_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON brands, leads, keychain, messages, stage_runs TO paitho_app;
GRANT SELECT, INSERT ON period_keys TO paitho_app;
GRANT SELECT, INSERT ON suppression TO paitho_app;
GRANT SELECT, INSERT, UPDATE ON dsar_requests TO paitho_app;
GRANT INSERT ON audit_log TO paitho_app;

-- The app role cannot SELECT the audit log; the owner's export reads it through this function.
CREATE FUNCTION audit_entries()
    RETURNS TABLE (seq bigint, at timestamptz, actor text, action text, detail jsonb,
                   prev_hash bytea, row_hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT seq, at, actor, action, detail, prev_hash, row_hash FROM audit_log ORDER BY seq $$;
REVOKE ALL ON FUNCTION audit_entries() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_entries() TO paitho_app;
