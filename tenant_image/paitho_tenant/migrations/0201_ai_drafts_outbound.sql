-- AI drafts flow into the outbound engine (issues 6 and 7): a draft in status 'queued' is
-- planned by the outbound planner as the queue row of its (enrolment, step) — the text of
-- the draft instead of the step's template — and the row's outcome comes back to the draft.
-- Numbered after 0200 (which creates ai_drafts): migrations apply in version order.
-- Written to be safe when re-run by hand (IF EXISTS / IF NOT EXISTS everywhere).

ALTER TABLE ai_drafts DROP CONSTRAINT IF EXISTS ai_drafts_status_check;
ALTER TABLE ai_drafts ADD CONSTRAINT ai_drafts_status_check CHECK (status IN (
    'audit_failed', 'awaiting_review', 'approved', 'rejected', 'queued', 'sent', 'failed'));

-- The queue row planned from this draft (set in the planner's transaction), when it was
-- sent, or why it was not (a fixed engine phrase, never message text).
ALTER TABLE ai_drafts ADD COLUMN IF NOT EXISTS outbound_id bigint
    REFERENCES outbound_messages ON DELETE SET NULL;
ALTER TABLE ai_drafts ADD COLUMN IF NOT EXISTS sent_at timestamptz;
ALTER TABLE ai_drafts ADD COLUMN IF NOT EXISTS send_error text;
CREATE UNIQUE INDEX IF NOT EXISTS ai_drafts_outbound ON ai_drafts (outbound_id);
-- The planner's look-up of the queued draft for (campaign, lead, step).
CREATE INDEX IF NOT EXISTS ai_drafts_queued ON ai_drafts (campaign_id, lead_id, step)
    WHERE status = 'queued';
