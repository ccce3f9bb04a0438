-- Audit-log segments: checkpoints close monthly segments of the chain; after 12 months whole
-- segments are pruned by audit_prune() (SECURITY DEFINER, owned by the owner role), which logs
-- the pruning as an audit entry naming the new anchor. Verification then starts from the last
-- pruned checkpoint's hash instead of genesis (audit.py).

CREATE TABLE IF NOT EXISTS audit_checkpoints (
    segment integer PRIMARY KEY,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL UNIQUE,
    last_hash bytea NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    row_count bigint NOT NULL,
    created_at timestamptz NOT NULL,
    pruned_at timestamptz,
    CHECK (last_seq >= first_seq)
);

-- A checkpoint cannot lie: given only the last row it closes, everything else is computed from
-- the log itself (the segment follows the previous checkpoint without a gap).
CREATE OR REPLACE FUNCTION audit_checkpoint_fill() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public
    AS $$
    DECLARE
        prev public.audit_checkpoints%ROWTYPE;
    BEGIN
        SELECT * INTO prev FROM public.audit_checkpoints ORDER BY segment DESC LIMIT 1;
        NEW.segment := coalesce(prev.segment, 0) + 1;
        NEW.first_seq := coalesce(prev.last_seq, 0) + 1;
        IF NEW.last_seq IS NULL OR NEW.last_seq < NEW.first_seq THEN
            RAISE EXCEPTION 'an audit checkpoint must close at least one new row'
                USING ERRCODE = 'check_violation';
        END IF;
        SELECT row_hash INTO NEW.last_hash FROM public.audit_log WHERE seq = NEW.last_seq;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'an audit checkpoint must close on an existing row'
                USING ERRCODE = 'check_violation';
        END IF;
        SELECT min(at), max(at), count(*) INTO NEW.first_at, NEW.last_at, NEW.row_count
            FROM public.audit_log WHERE seq BETWEEN NEW.first_seq AND NEW.last_seq;
        NEW.created_at := now();
        NEW.pruned_at := NULL;
        RETURN NEW;
    END
    $$;

-- Checkpoints are never deleted (a pruned segment's checkpoint stays as the anchor); the only
-- change is marking a segment older than 12 months (by the database clock) pruned, and only
-- inside audit_prune().
CREATE OR REPLACE FUNCTION audit_checkpoint_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public
    AS $$
    BEGIN
        IF TG_OP = 'UPDATE'
            AND current_setting('paitho.audit_prune', true) = 'on'
            AND OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL
            AND OLD.last_at < now() - interval '12 months'
            AND (NEW.segment, NEW.first_seq, NEW.last_seq, NEW.last_hash, NEW.first_at,
                 NEW.last_at, NEW.row_count, NEW.created_at)
                IS NOT DISTINCT FROM
                (OLD.segment, OLD.first_seq, OLD.last_seq, OLD.last_hash, OLD.first_at,
                 OLD.last_at, OLD.row_count, OLD.created_at)
        THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_checkpoints is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$;

-- Deleting audit rows: only rows of a segment marked pruned in this transaction's
-- audit_prune() (the flag alone is not enough: the segment must be checkpointed, marked pruned
-- and older than 12 months by the database clock). UPDATE and TRUNCATE stay rejected.
CREATE OR REPLACE FUNCTION audit_delete_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public
    AS $$
    BEGIN
        IF current_setting('paitho.audit_prune', true) = 'on' AND EXISTS (
            SELECT 1 FROM public.audit_checkpoints c
            WHERE OLD.seq BETWEEN c.first_seq AND c.last_seq
              AND c.pruned_at IS NOT NULL AND c.last_at < now() - interval '12 months')
        THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$;

DROP TRIGGER IF EXISTS audit_checkpoint_fill ON audit_checkpoints;
CREATE TRIGGER audit_checkpoint_fill BEFORE INSERT ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_fill();
DROP TRIGGER IF EXISTS audit_checkpoint_guard ON audit_checkpoints;
CREATE TRIGGER audit_checkpoint_guard BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_guard();
DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON audit_checkpoints;
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_guard();

DROP TRIGGER IF EXISTS audit_no_change ON audit_log;
DROP TRIGGER IF EXISTS audit_no_update ON audit_log;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_reject();
DROP TRIGGER IF EXISTS audit_delete_guard ON audit_log;
CREATE TRIGGER audit_delete_guard BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_delete_guard();

-- The pruning entry vouches for the anchor (audit.verify): only the owner (in practice
-- audit_prune()) may write one, never the app role.
CREATE OR REPLACE FUNCTION audit_reserved_action() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public
    AS $$
    BEGIN
        IF NEW.action = 'audit.segments_pruned'
            AND NOT pg_has_role(current_user, 'paitho_owner', 'USAGE') THEN
            RAISE EXCEPTION 'audit action % is reserved to audit_prune()', NEW.action
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$;

DROP TRIGGER IF EXISTS audit_reserved_action ON audit_log;
CREATE TRIGGER audit_reserved_action BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_reserved_action();

-- Close every whole UTC month before `as_of` (never later than the database clock) that is not
-- checkpointed yet, one segment per month. Returns how many segments were closed.
CREATE OR REPLACE FUNCTION audit_checkpoint(as_of timestamptz DEFAULT now())
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
    DECLARE
        cut timestamptz := date_trunc('month', least(as_of, now()), 'UTC');
        after_seq bigint;
        month record;
        made integer := 0;
    BEGIN
        PERFORM 1 FROM public.audit_head WHERE id = 1 FOR UPDATE;  -- serialise with inserts
        SELECT coalesce(max(last_seq), 0) INTO after_seq FROM public.audit_checkpoints;
        FOR month IN
            SELECT max(seq) AS last_seq FROM public.audit_log
            WHERE seq > after_seq AND at < cut
            GROUP BY date_trunc('month', at, 'UTC') ORDER BY 1
        LOOP
            INSERT INTO public.audit_checkpoints (last_seq) VALUES (month.last_seq);
            made := made + 1;
        END LOOP;
        RETURN made;
    END
    $$;

-- Checkpoint, then prune the oldest whole segments whose newest row is older than 12 months
-- before `as_of` (never later than the database clock), and log it. Returns the segments pruned.
CREATE OR REPLACE FUNCTION audit_prune(as_of timestamptz DEFAULT now(),
                                       actor text DEFAULT 'retention')
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
    DECLARE
        cutoff timestamptz := least(as_of, now()) - interval '12 months';
        segs integer[];
        from_at timestamptz;
        to_at timestamptz;
        anchor public.audit_checkpoints%ROWTYPE;
        removed bigint;
    BEGIN
        PERFORM public.audit_checkpoint(as_of);
        SELECT array_agg(segment ORDER BY segment), min(first_at), max(last_at)
            INTO segs, from_at, to_at
            FROM public.audit_checkpoints
            WHERE pruned_at IS NULL AND last_at < cutoff
              AND segment < coalesce((SELECT min(segment) FROM public.audit_checkpoints
                                      WHERE pruned_at IS NULL AND last_at >= cutoff),
                                     2147483647);
        IF segs IS NULL THEN
            RETURN 0;
        END IF;
        SELECT * INTO anchor FROM public.audit_checkpoints
            WHERE segment = segs[array_length(segs, 1)];
        PERFORM set_config('paitho.audit_prune', 'on', true);
        UPDATE public.audit_checkpoints SET pruned_at = now() WHERE segment = ANY (segs);
        DELETE FROM public.audit_log WHERE seq <= anchor.last_seq;
        GET DIAGNOSTICS removed = ROW_COUNT;
        PERFORM set_config('paitho.audit_prune', '', true);
        INSERT INTO public.audit_log (actor, action, detail) VALUES (
            actor, 'audit.segments_pruned', jsonb_build_object(
                'segments', to_jsonb(segs),
                'rows', removed,
                'from', to_char(from_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'to', to_char(to_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'anchor_seq', anchor.last_seq,
                'anchor_hash', encode(anchor.last_hash, 'hex'),
                'older_than_months', 12));
        RETURN array_length(segs, 1);
    END
    $$;

REVOKE ALL ON TABLE audit_checkpoints FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_checkpoint(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_prune(timestamptz, text) FROM PUBLIC;
-- Checkpoints hold seq numbers, hashes and times only: the app may read them (export).
GRANT SELECT ON audit_checkpoints TO paitho_app;
