-- AI stages (issue 7): per-call details of stage runs, the editable price table, monthly
-- budgets, versioned prompt templates per brand, per-campaign AI settings (review or
-- autonomous), drafts and their review, qualifications, opt-in enrichment.
-- Encrypted columns hold pgp_sym_encrypt() output under the data key (bytea); prompts and
-- responses live in the core's stage_runs under the period key. Nothing indexes a decrypted
-- value. Raw provider responses are never stored anywhere.

-- Base URL of an OpenAI-compatible server (self-hosted model) for one keychain key.
CREATE TABLE ai_endpoints (
    key_id bigint PRIMARY KEY REFERENCES keychain ON DELETE CASCADE,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    base_url text NOT NULL CHECK (base_url ~ '^https?://'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per provider call, next to its stage_runs row: which job and attempt it was, the
-- provider, the template version, the outcome and the cost. (job, attempt) is unique, so a
-- retried job can never write the same call twice.
CREATE TABLE ai_run_meta (
    run_id bigint PRIMARY KEY REFERENCES stage_runs ON DELETE CASCADE,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    job uuid NOT NULL,
    attempt smallint NOT NULL CHECK (attempt >= 1),
    provider text NOT NULL,
    key_id bigint,
    prompt_version text NOT NULL,
    status text NOT NULL CHECK (status IN ('ok', 'invalid_output', 'failed')),
    error_code text,
    error text,
    http_attempts smallint NOT NULL DEFAULT 1,
    cost_usd numeric(14, 6),
    started_at timestamptz NOT NULL,
    UNIQUE (job, attempt)
);
CREATE INDEX ai_run_meta_month ON ai_run_meta (workspace_id, started_at);

-- Prices the customer can edit (USD per million tokens); built-in defaults apply otherwise.
CREATE TABLE ai_prices (
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    provider text NOT NULL,
    model text NOT NULL,
    input_usd_per_mtok numeric(12, 4) NOT NULL CHECK (input_usd_per_mtok >= 0),
    output_usd_per_mtok numeric(12, 4) NOT NULL CHECK (output_usd_per_mtok >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, provider, model)
);

CREATE TABLE ai_budgets (
    workspace_id bigint PRIMARY KEY DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    monthly_usd numeric(12, 2) NOT NULL CHECK (monthly_usd >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Versioned prompt templates per brand and stage (the built-in version is used when none).
CREATE TABLE ai_prompt_templates (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    brand_id bigint NOT NULL REFERENCES brands ON DELETE CASCADE,
    stage text NOT NULL CHECK (stage IN ('qualify', 'draft', 'audit')),
    version integer NOT NULL CHECK (version >= 1),
    system bytea NOT NULL,
    user_template bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, stage, version)
);

-- AI settings of an outbound campaign (campaign_id is the outbound engine's campaigns.id).
CREATE TABLE ai_campaign_settings (
    campaign_id bigint PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    brand_id bigint NOT NULL REFERENCES brands ON DELETE CASCADE,
    mode text NOT NULL DEFAULT 'review' CHECK (mode IN ('review', 'autonomous')),
    key_id bigint REFERENCES keychain ON DELETE SET NULL,
    model text NOT NULL,
    opt_out_line bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Drafts written by the drafting stage and what happened to them.
CREATE TABLE ai_drafts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    campaign_id bigint NOT NULL,
    lead_id bigint NOT NULL REFERENCES leads ON DELETE CASCADE,
    step integer NOT NULL CHECK (step >= 1),
    subject bytea NOT NULL,
    body bytea NOT NULL,
    status text NOT NULL CHECK (status IN (
        'audit_failed', 'awaiting_review', 'approved', 'rejected', 'queued')),
    audit_reasons bytea,
    draft_run_id bigint REFERENCES stage_runs ON DELETE SET NULL,
    audit_run_id bigint REFERENCES stage_runs ON DELETE SET NULL,
    edited boolean NOT NULL DEFAULT false,
    decided_by text,
    decided_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_drafts_status ON ai_drafts (workspace_id, status);

CREATE TABLE ai_qualifications (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    lead_id bigint NOT NULL REFERENCES leads ON DELETE CASCADE,
    brand_id bigint NOT NULL REFERENCES brands ON DELETE CASCADE,
    verdict text NOT NULL CHECK (verdict IN ('qualified', 'not_qualified', 'needs_review')),
    score smallint NOT NULL CHECK (score BETWEEN 0 AND 100),
    reason bytea NOT NULL,
    run_id bigint REFERENCES stage_runs ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Enrichment: off unless a row here says a person opted the workspace in, with its own key.
CREATE TABLE ai_enrichment_settings (
    workspace_id bigint PRIMARY KEY DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    provider text NOT NULL CHECK (provider IN ('apollo', 'local_csv')),
    key_id bigint REFERENCES keychain ON DELETE SET NULL,
    directory_path text,
    enabled boolean NOT NULL,
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lead_enrichment (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL DEFAULT current_workspace() REFERENCES workspaces ON DELETE CASCADE,
    lead_id bigint NOT NULL REFERENCES leads ON DELETE CASCADE,
    field text NOT NULL,
    value bytea NOT NULL,
    source text NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lead_id, field, source)
);

ALTER TABLE ai_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_run_meta ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_prices ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_prompt_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_campaign_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_drafts ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_qualifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_enrichment_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE lead_enrichment ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_scope ON ai_endpoints
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_run_meta
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_prices
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_budgets
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_prompt_templates
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_campaign_settings
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_drafts
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_qualifications
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON ai_enrichment_settings
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());
CREATE POLICY workspace_scope ON lead_enrichment
    USING (workspace_id = current_workspace()) WITH CHECK (workspace_id = current_workspace());

GRANT SELECT, INSERT, UPDATE, DELETE ON ai_endpoints, ai_prices, ai_budgets,
    ai_campaign_settings, ai_drafts, ai_qualifications, ai_enrichment_settings, lead_enrichment
    TO paitho_app;
GRANT SELECT, INSERT ON ai_run_meta, ai_prompt_templates TO paitho_app;
