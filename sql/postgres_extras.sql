-- PostgreSQL-only extras on top of sql/schema.sql (run after it). Idempotent. PostgreSQL >= 15.

-- Views run with the rights of the caller (security_invoker), so the row-level security and the
-- privileges of the tables below apply through them: without it a view runs with its owner's
-- rights and `anon` could read every row through it.

-- Latest session's chain per symbol, as the original system's dashboards read it.
CREATE OR REPLACE VIEW option_chain_latest WITH (security_invoker = true) AS
SELECT c.*
FROM option_chain_data c
JOIN (SELECT symbol, max(trade_date) AS trade_date FROM option_chain_data GROUP BY symbol) m
  ON m.symbol = c.symbol AND m.trade_date = c.trade_date;

-- Put-call ratio per symbol and session.
CREATE OR REPLACE VIEW put_call_ratio_daily WITH (security_invoker = true) AS
SELECT trade_date, symbol,
       sum(oi) FILTER (WHERE option_type = 'PE') / nullif(sum(oi) FILTER (WHERE option_type = 'CE'), 0) AS pcr_oi,
       sum(volume) FILTER (WHERE option_type = 'PE')
         / nullif(sum(volume) FILTER (WHERE option_type = 'CE'), 0) AS pcr_volume
FROM option_chain_data
GROUP BY trade_date, symbol;

CREATE INDEX IF NOT EXISTS ix_option_chain_data_date_expiry ON option_chain_data (trade_date, expiry);

-- Supabase: row-level security and privileges, for the roles Supabase creates.
--   anon           (the public API key): no access at all, neither tables nor views;
--   authenticated  (signed-in users): SELECT only, through the policy read_market_data;
--   service_role   (the pipeline's writes; BYPASSRLS in Supabase): read and write.
-- Supabase grants ALL on new tables to these roles by default; TRUNCATE, REFERENCES and TRIGGER
-- (and writes) are revoked from anon and authenticated here. TRUNCATE is not subject to RLS.
-- The roles must exist: the script fails (RAISE EXCEPTION) rather than leave the tables without
-- row-level security. On a plain PostgreSQL without these roles, either create them or run
-- `SET options_v4.skip_rls = 'on';` before this file to skip this block on purpose.
-- (`options_v4.rls_roles` overrides the role names, anon,authenticated,service_role, e.g. in tests.)
DO $$
DECLARE
  t text;
  roles text[] := string_to_array(coalesce(nullif(current_setting('options_v4.rls_roles', true), ''),
                                           'anon,authenticated,service_role'), ',');
  r_anon text;
  r_auth text;
  r_service text;
  missing text[];
  tables text[] := ARRAY['fno_universe', 'option_chain_data', 'instruments', 'underlying_bars', 'nifty_historical_data',
                         'india_vix_data', 'market_conditions', 'pipeline_failures', 'session_provenance', 'option_greeks',
                         'historical_iv_summary', 'iv_percentiles', 'technical_signals', 'strategies',
                         'strategy_details', 'strategy_parameters', 'strategy_exit_levels',
                         'industry_allocations_current', 'sector_allocations_current',
                         'stock_industry_mapping', 'portfolio_allocation', 'portfolio_allocation_summary',
                         'portfolio_allocation_runs', 'allocation_approvals', 'orders', 'order_events',
                         'trades', 'positions', 'strategy_execution_status', 'exit_intents',
                         'strategy_monitoring', 'monitor_state', 'audit_log', 'archived_sessions'];
  views text[] := ARRAY['option_chain_latest', 'put_call_ratio_daily'];
BEGIN
  IF coalesce(current_setting('options_v4.skip_rls', true), '') = 'on' THEN
    RAISE WARNING 'options_v4.skip_rls = on: row-level security and role privileges NOT applied';
    RETURN;
  END IF;
  IF array_length(roles, 1) IS DISTINCT FROM 3 THEN
    RAISE EXCEPTION 'options_v4.rls_roles must name three roles (anon,authenticated,service_role), got %',
      array_to_string(roles, ',');
  END IF;
  r_anon := trim(roles[1]); r_auth := trim(roles[2]); r_service := trim(roles[3]);
  SELECT array_agg(x) INTO missing FROM unnest(ARRAY[r_anon, r_auth, r_service]) AS x
   WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = x);
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'row-level security not applied: role(s) % do not exist (Supabase creates anon, '
      'authenticated and service_role; create them, or SET options_v4.skip_rls = ''on'' to skip on purpose)',
      array_to_string(missing, ', ');
  END IF;
  -- the schema-version table of the migrations (absent when only sql/schema.sql was applied)
  IF to_regclass('options_v4_alembic_version') IS NOT NULL THEN
    tables := tables || 'options_v4_alembic_version'::text;
  END IF;
  FOREACH t IN ARRAY tables
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('REVOKE ALL ON TABLE %I FROM %I', t, r_anon);
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE %I FROM %I', t, r_auth);
    EXECUTE format('GRANT SELECT ON TABLE %I TO %I', t, r_auth);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE %I TO %I', t, r_service);
    EXECUTE format('DROP POLICY IF EXISTS read_market_data ON %I', t);
    EXECUTE format('CREATE POLICY read_market_data ON %I FOR SELECT TO %I USING (true)', t, r_auth);
  END LOOP;
  FOREACH t IN ARRAY views
  LOOP
    EXECUTE format('REVOKE ALL ON TABLE %I FROM %I', t, r_anon);
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE %I FROM %I', t, r_auth);
    EXECUTE format('GRANT SELECT ON TABLE %I TO %I, %I', t, r_auth, r_service);
  END LOOP;
END $$;
