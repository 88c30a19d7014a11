-- PostgreSQL-only extras on top of sql/schema.sql (run after it). Idempotent.

-- Latest session's chain per symbol, as the original system's dashboards read it.
CREATE OR REPLACE VIEW option_chain_latest AS
SELECT c.*
FROM option_chain_data c
JOIN (SELECT symbol, max(trade_date) AS trade_date FROM option_chain_data GROUP BY symbol) m
  ON m.symbol = c.symbol AND m.trade_date = c.trade_date;

-- Put-call ratio per symbol and session.
CREATE OR REPLACE VIEW put_call_ratio_daily AS
SELECT trade_date, symbol,
       sum(oi) FILTER (WHERE option_type = 'PE') / nullif(sum(oi) FILTER (WHERE option_type = 'CE'), 0) AS pcr_oi,
       sum(volume) FILTER (WHERE option_type = 'PE')
         / nullif(sum(volume) FILTER (WHERE option_type = 'CE'), 0) AS pcr_volume
FROM option_chain_data
GROUP BY trade_date, symbol;

CREATE INDEX IF NOT EXISTS ix_option_chain_data_date_expiry ON option_chain_data (trade_date, expiry);

-- Supabase: row-level security. Market data is readable by signed-in users; writes go through
-- the service role (which bypasses RLS) or a direct database connection.
DO $$
DECLARE t text;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    FOREACH t IN ARRAY ARRAY['fno_universe', 'option_chain_data', 'underlying_bars', 'nifty_historical_data',
                             'india_vix_data', 'market_conditions', 'pipeline_failures', 'option_greeks',
                             'historical_iv_summary', 'iv_percentiles', 'technical_signals', 'strategies',
                             'strategy_details', 'strategy_parameters', 'strategy_exit_levels',
                             'industry_allocations_current', 'sector_allocations_current',
                             'stock_industry_mapping', 'portfolio_allocation', 'portfolio_allocation_summary']
    LOOP
      EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
      IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = t AND policyname = 'read_market_data') THEN
        EXECUTE format('CREATE POLICY read_market_data ON %I FOR SELECT TO authenticated USING (true)', t);
      END IF;
    END LOOP;
  END IF;
END $$;
