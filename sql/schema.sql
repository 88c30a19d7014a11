-- Generated from options_v4_dagster/store/schema.py by scripts/generate_ddl.py. Do not edit:
-- change the schema in code and regenerate (a test keeps this file equal to the schema).
-- Postgres-only extras (views, row-level security for Supabase) are in sql/postgres_extras.sql.

CREATE TABLE IF NOT EXISTS archived_sessions (
	table_name VARCHAR(64) NOT NULL, 
	trade_date DATE NOT NULL, 
	path VARCHAR(512) NOT NULL, 
	row_count INTEGER NOT NULL, 
	checksum VARCHAR(64) NOT NULL, 
	file_bytes BIGINT NOT NULL, 
	archived_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (table_name, trade_date)
);

COMMENT ON TABLE archived_sessions IS 'Sessions of contract-level tables moved to Parquet (options-v4 archive); written in the transaction that deletes their rows, removed by any later write of the session';
COMMENT ON COLUMN archived_sessions.table_name IS 'option_chain_data or option_greeks';
COMMENT ON COLUMN archived_sessions.path IS 'the Parquet file, relative to the archive root: TABLE/session=YYYY-MM-DD/part-HASH.parquet';
COMMENT ON COLUMN archived_sessions.row_count IS 'rows in the file (those deleted from the table)';
COMMENT ON COLUMN archived_sessions.checksum IS 'sha256 of the rows in canonical form (typed, sorted by the primary key)';

CREATE TABLE IF NOT EXISTS audit_log (
	id INTEGER NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	subject VARCHAR(192), 
	payload TEXT, 
	prev_hash VARCHAR(64) NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (prev_hash), 
	UNIQUE (hash)
);

CREATE INDEX IF NOT EXISTS ix_audit_log_kind ON audit_log (kind);

COMMENT ON TABLE audit_log IS 'Append-only audit trail, each row carrying the hash of the previous one';
COMMENT ON COLUMN audit_log.id IS '1, 2, ... in chain order';
COMMENT ON COLUMN audit_log.kind IS 'order_request, order_response, exit_decision, intent, settlement, feed_connect, feed_disconnect, mode_change, ...';
COMMENT ON COLUMN audit_log.subject IS 'what it is about: an intent key, a correlation id, a feed';
COMMENT ON COLUMN audit_log.payload IS 'canonical JSON';
COMMENT ON COLUMN audit_log.prev_hash IS 'the hash of the previous row (64 zeros for the first): unique, so the chain cannot fork';
COMMENT ON COLUMN audit_log.hash IS 'sha256 of prev_hash and the row''s canonical JSON (id, at, kind, subject, payload)';

CREATE TABLE IF NOT EXISTS exit_intents (
	intent_key VARCHAR(192) NOT NULL, 
	strategy_key VARCHAR(128) NOT NULL, 
	strategy_id VARCHAR(96) NOT NULL, 
	allocation_id VARCHAR(64) NOT NULL, 
	position_id VARCHAR(128) NOT NULL, 
	trade_date DATE NOT NULL, 
	rule VARCHAR(32) NOT NULL, 
	level VARCHAR(32) NOT NULL, 
	action VARCHAR(16) NOT NULL, 
	urgency VARCHAR(8) NOT NULL, 
	quantities TEXT NOT NULL, 
	reason TEXT, 
	mode VARCHAR(16) NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	broker VARCHAR(16), 
	state VARCHAR(16) NOT NULL, 
	attempt INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	note TEXT, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (intent_key)
);

CREATE INDEX IF NOT EXISTS ix_exit_intents_state ON exit_intents (state);

CREATE INDEX IF NOT EXISTS ix_exit_intents_strategy_key ON exit_intents (strategy_key);

COMMENT ON TABLE exit_intents IS 'One row per exit intent, written before any of its orders; append-only';
COMMENT ON COLUMN exit_intents.intent_key IS 'strategy_key:rule:level, the exactly-once key: the polling job, the real-time monitor and any retry write the same key and get the one row';
COMMENT ON COLUMN exit_intents.strategy_key IS 'the monitored position: strategy_id@allocation prefix';
COMMENT ON COLUMN exit_intents.trade_date IS 'the session of the cycle that wrote it';
COMMENT ON COLUMN exit_intents.action IS 'EXIT_ALL / EXIT_PARTIAL';
COMMENT ON COLUMN exit_intents.urgency IS 'HIGH / MEDIUM / NORMAL';
COMMENT ON COLUMN exit_intents.quantities IS 'JSON [{leg, security_id, quantity (shares), lots, close_side}] at the decision';
COMMENT ON COLUMN exit_intents.mode IS 'simulation / alert_only / live';
COMMENT ON COLUMN exit_intents.source IS 'sensor / realtime / cli';
COMMENT ON COLUMN exit_intents.broker IS 'paper / dhan; null when alert-only';
COMMENT ON COLUMN exit_intents.state IS 'PENDING, PLACED, FILLED, PARTIAL, FAILED, ALERTED';
COMMENT ON COLUMN exit_intents.attempt IS 'the next order attempt number of its correlation ids (bumped by each retry)';
COMMENT ON COLUMN exit_intents.version IS 'compare-and-set counter of updates';
COMMENT ON COLUMN exit_intents.note IS 'the last outcome: fills, what failed and was escalated';

CREATE TABLE IF NOT EXISTS fno_universe (
	trade_date DATE NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	name VARCHAR(128), 
	instrument VARCHAR(8) NOT NULL, 
	lot_size INTEGER NOT NULL, 
	strike_step FLOAT, 
	industry VARCHAR(96), 
	dhan_security_id VARCHAR(16), 
	dhan_segment VARCHAR(16), 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (trade_date, symbol)
);

COMMENT ON TABLE fno_universe IS 'F&O underlyings served on each session, with the lot size in force that day';

CREATE TABLE IF NOT EXISTS historical_iv_summary (
	trade_date DATE NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	spot FLOAT, 
	atm_iv_30d FLOAT, 
	atm_iv_30d_method VARCHAR(16), 
	atm_iv_near FLOAT, 
	near_expiry DATE, 
	atm_iv_far FLOAT, 
	far_expiry DATE, 
	skew_25d FLOAT, 
	term_slope FLOAT, 
	rv_20 FLOAT, 
	rv_60 FLOAT, 
	iv_minus_rv FLOAT, 
	pcr_oi FLOAT, 
	pcr_volume FLOAT, 
	india_vix FLOAT, 
	expiries INTEGER, 
	contracts_with_iv INTEGER, 
	PRIMARY KEY (trade_date, symbol)
);

CREATE INDEX IF NOT EXISTS ix_historical_iv_summary_symbol_date ON historical_iv_summary (symbol, trade_date);

COMMENT ON TABLE historical_iv_summary IS 'Daily IV summary per underlying (the IV history)';
COMMENT ON COLUMN historical_iv_summary.atm_iv_30d IS '30-calendar-day ATM IV, variance-time interpolated';
COMMENT ON COLUMN historical_iv_summary.atm_iv_near IS 'ATM IV of the nearest expiry at least 1.5 days out';
COMMENT ON COLUMN historical_iv_summary.skew_25d IS '25-delta put IV minus 25-delta call IV, expiry nearest 30 days';
COMMENT ON COLUMN historical_iv_summary.term_slope IS '(far ATM IV - near ATM IV) per year of maturity';
COMMENT ON COLUMN historical_iv_summary.rv_20 IS 'realized vol, 20 sessions, annualized';
COMMENT ON COLUMN historical_iv_summary.iv_minus_rv IS 'atm_iv_30d - rv_20';

CREATE TABLE IF NOT EXISTS india_vix_data (
	date DATE NOT NULL, 
	open FLOAT, 
	high FLOAT, 
	low FLOAT, 
	close FLOAT NOT NULL, 
	volume FLOAT, 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (date)
);

COMMENT ON TABLE india_vix_data IS 'India VIX daily values';

CREATE TABLE IF NOT EXISTS industry_allocations_current (
	industry VARCHAR(96) NOT NULL, 
	weight FLOAT NOT NULL, 
	position_type VARCHAR(8) NOT NULL, 
	source VARCHAR(256), 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (industry)
);

COMMENT ON TABLE industry_allocations_current IS 'Current industry weights and views used by the allocator';
COMMENT ON COLUMN industry_allocations_current.weight IS 'share of capital, the weights sum to 1';
COMMENT ON COLUMN industry_allocations_current.position_type IS 'LONG / SHORT / NEUTRAL';
COMMENT ON COLUMN industry_allocations_current.source IS 'default weighting or the imported file';

CREATE TABLE IF NOT EXISTS instruments (
	trade_date DATE NOT NULL, 
	security_id VARCHAR(32) NOT NULL, 
	exchange_segment VARCHAR(16) NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	instrument_type VARCHAR(8) NOT NULL, 
	expiry DATE, 
	strike FLOAT, 
	option_type VARCHAR(2), 
	lot_size INTEGER NOT NULL, 
	tick_size FLOAT, 
	freeze_quantity INTEGER, 
	trading_symbol VARCHAR(64), 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (trade_date, security_id, exchange_segment), 
	CONSTRAINT ck_instruments_option_type CHECK (option_type in ('CE', 'PE'))
);

CREATE INDEX IF NOT EXISTS ix_instruments_contract ON instruments (trade_date, symbol, expiry, strike, option_type);

COMMENT ON TABLE instruments IS 'Tradable contracts per session (the broker''s scrip master or the session''s chain): security id, lot size, tick size and freeze quantity, what order validation and both brokers read';
COMMENT ON COLUMN instruments.security_id IS 'the broker''s id (Dhan''s scrip master), else the chain''s id or the contract key';
COMMENT ON COLUMN instruments.exchange_segment IS 'Dhan v2 segment: NSE_FNO, NSE_EQ, IDX_I';
COMMENT ON COLUMN instruments.symbol IS 'the underlying';
COMMENT ON COLUMN instruments.instrument_type IS 'OPTIDX, OPTSTK, FUTIDX, FUTSTK, INDEX, EQUITY';
COMMENT ON COLUMN instruments.option_type IS 'CE / PE; null for futures and underlyings';
COMMENT ON COLUMN instruments.lot_size IS 'shares';
COMMENT ON COLUMN instruments.tick_size IS 'INR (Dhan''s scrip master states paise); null for an index';
COMMENT ON COLUMN instruments.freeze_quantity IS 'shares: every order stays strictly below it; null for underlyings';

CREATE TABLE IF NOT EXISTS iv_percentiles (
	trade_date DATE NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	atm_iv_30d FLOAT, 
	iv_percentile FLOAT, 
	iv_rank FLOAT, 
	history_days INTEGER, 
	window_min FLOAT, 
	window_max FLOAT, 
	iv_environment VARCHAR(8), 
	reason TEXT, 
	PRIMARY KEY (trade_date, symbol)
);

COMMENT ON TABLE iv_percentiles IS 'IV percentile and IV rank per underlying and session';
COMMENT ON COLUMN iv_percentiles.iv_percentile IS '0-100: share of the previous 252 sessions below today';
COMMENT ON COLUMN iv_percentiles.iv_rank IS '0-100: (iv - min)/(max - min) over the window and today';
COMMENT ON COLUMN iv_percentiles.iv_environment IS 'LOW / NORMAL / HIGH';
COMMENT ON COLUMN iv_percentiles.reason IS 'why the values are null';

CREATE TABLE IF NOT EXISTS market_conditions (
	trade_date DATE NOT NULL, 
	nifty_close FLOAT, 
	nifty_ema20 FLOAT, 
	nifty_ema50 FLOAT, 
	nifty_return_20d FLOAT, 
	nifty_trend VARCHAR(16), 
	trend_strength FLOAT, 
	india_vix FLOAT, 
	vix_band VARCHAR(16), 
	pcr_oi FLOAT, 
	pcr_volume FLOAT, 
	pcr_sentiment VARCHAR(16), 
	market_state VARCHAR(48), 
	notes TEXT, 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (trade_date)
);

COMMENT ON TABLE market_conditions IS 'NIFTY trend, India VIX band and put-call-ratio sentiment per session';

CREATE TABLE IF NOT EXISTS monitor_state (
	strategy_key VARCHAR(128) NOT NULL, 
	strategy_id VARCHAR(96) NOT NULL, 
	allocation_id VARCHAR(64) NOT NULL, 
	position_id VARCHAR(128) NOT NULL, 
	high_water_mark FLOAT, 
	trailing_armed BOOLEAN NOT NULL, 
	day DATE, 
	day_start_pnl FLOAT, 
	last_pnl FLOAT, 
	last_as_of TIMESTAMP WITH TIME ZONE, 
	closed_day DATE, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (strategy_key)
);

COMMENT ON TABLE monitor_state IS 'What the monitor keeps per strategy between cycles: the high-water mark, the day-start P&L';
COMMENT ON COLUMN monitor_state.high_water_mark IS 'INR: the trailing stop''s high-water mark of the P&L';
COMMENT ON COLUMN monitor_state.day IS 'IST date of day_start_pnl';
COMMENT ON COLUMN monitor_state.day_start_pnl IS 'INR at the mark when the day started (the daily loss limit)';
COMMENT ON COLUMN monitor_state.last_pnl IS 'INR at the mark at the last cycle';
COMMENT ON COLUMN monitor_state.closed_day IS 'IST date the strategy was closed (its day P&L still counts that day)';

CREATE TABLE IF NOT EXISTS nifty_historical_data (
	date DATE NOT NULL, 
	open FLOAT, 
	high FLOAT, 
	low FLOAT, 
	close FLOAT NOT NULL, 
	volume FLOAT, 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (date)
);

COMMENT ON TABLE nifty_historical_data IS 'NIFTY 50 daily bars';

CREATE TABLE IF NOT EXISTS option_chain_data (
	trade_date DATE NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	expiry DATE NOT NULL, 
	strike FLOAT NOT NULL, 
	option_type VARCHAR(2) NOT NULL, 
	bid FLOAT, 
	ask FLOAT, 
	bid_qty FLOAT, 
	ask_qty FLOAT, 
	ltp FLOAT, 
	close FLOAT, 
	volume FLOAT, 
	oi FLOAT, 
	oi_change FLOAT, 
	exchange_iv FLOAT, 
	underlying_price FLOAT NOT NULL, 
	futures_price FLOAT, 
	lot_size INTEGER NOT NULL, 
	security_id VARCHAR(32), 
	snapshot_ts TIMESTAMP WITH TIME ZONE, 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (trade_date, symbol, expiry, strike, option_type), 
	CONSTRAINT ck_option_chain_data_option_type CHECK (option_type in ('CE', 'PE'))
);

CREATE INDEX IF NOT EXISTS ix_option_chain_data_symbol_date ON option_chain_data (symbol, trade_date);

COMMENT ON TABLE option_chain_data IS 'Option chains per session: every listed contract within ~90 days';
COMMENT ON COLUMN option_chain_data.volume IS 'contracts';
COMMENT ON COLUMN option_chain_data.oi IS 'open interest in contracts';
COMMENT ON COLUMN option_chain_data.exchange_iv IS 'the source''s own IV, fraction';

CREATE TABLE IF NOT EXISTS option_greeks (
	trade_date DATE NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	expiry DATE NOT NULL, 
	strike FLOAT NOT NULL, 
	option_type VARCHAR(2) NOT NULL, 
	iv FLOAT, 
	iv_price FLOAT, 
	iv_price_kind VARCHAR(8), 
	iv_reason VARCHAR(16), 
	iv_nse FLOAT, 
	delta FLOAT, 
	gamma FLOAT, 
	vega FLOAT, 
	theta FLOAT, 
	forward FLOAT, 
	forward_method VARCHAR(8), 
	t_years FLOAT, 
	df FLOAT, 
	PRIMARY KEY (trade_date, symbol, expiry, strike, option_type)
);

COMMENT ON TABLE option_greeks IS 'Implied volatility and greeks per contract and session';
COMMENT ON COLUMN option_greeks.iv IS 'forward convention (Black-76 on the forward), fraction';
COMMENT ON COLUMN option_greeks.iv_price IS 'price the IV was solved from';
COMMENT ON COLUMN option_greeks.iv_price_kind IS 'mid or ltp';
COMMENT ON COLUMN option_greeks.iv_reason IS 'why iv is null: no_price, expired, no_solution';
COMMENT ON COLUMN option_greeks.iv_nse IS 'NSE convention (BS on spot, r=10%) from the last price';
COMMENT ON COLUMN option_greeks.vega IS 'per 1.00 of vol';
COMMENT ON COLUMN option_greeks.theta IS 'per calendar day';
COMMENT ON COLUMN option_greeks.forward_method IS 'futures, parity or carry';
COMMENT ON COLUMN option_greeks.t_years IS 'calendar days to 15:30 IST on expiry / 365';
COMMENT ON COLUMN option_greeks.df IS 'discount factor to expiry, exp(-rate * T) at the rate the IVs used';

CREATE TABLE IF NOT EXISTS orders (
	correlation_id VARCHAR(32) NOT NULL, 
	allocation_id VARCHAR(64), 
	position_id VARCHAR(128), 
	position_no INTEGER, 
	strategy_id VARCHAR(96), 
	leg INTEGER NOT NULL, 
	slice_no INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	purpose VARCHAR(8) NOT NULL, 
	intent VARCHAR(128), 
	broker VARCHAR(16) NOT NULL, 
	security_id VARCHAR(32) NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	expiry DATE, 
	strike FLOAT, 
	option_type VARCHAR(3), 
	side VARCHAR(4) NOT NULL, 
	quantity INTEGER NOT NULL, 
	lot_size INTEGER, 
	order_type VARCHAR(8) NOT NULL, 
	price FLOAT, 
	modifications INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	version INTEGER NOT NULL, 
	broker_order_id VARCHAR(64), 
	filled_quantity INTEGER NOT NULL, 
	average_price FLOAT, 
	reason TEXT, 
	error_code VARCHAR(32), 
	adopted BOOLEAN NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (correlation_id)
);

CREATE INDEX IF NOT EXISTS ix_orders_allocation_id ON orders (allocation_id);

CREATE INDEX IF NOT EXISTS ix_orders_broker_order_id ON orders (broker_order_id);

CREATE INDEX IF NOT EXISTS ix_orders_position ON orders (allocation_id, position_id, leg);

CREATE INDEX IF NOT EXISTS ix_orders_status ON orders (status);

COMMENT ON TABLE orders IS 'Every order, one row per correlation id, written before the request is sent; append-only';
COMMENT ON COLUMN orders.correlation_id IS 'deterministic (allocation, position, leg, slice, attempt) or exit intent; written before the request is sent: one key, one order';
COMMENT ON COLUMN orders.allocation_id IS 'null for an adopted order of unknown origin';
COMMENT ON COLUMN orders.position_no IS '1-based position number within the snapshot (in the id)';
COMMENT ON COLUMN orders.purpose IS 'entry / exit';
COMMENT ON COLUMN orders.intent IS 'exit intent key (e.g. unwind, strategy:rule:level)';
COMMENT ON COLUMN orders.broker IS 'paper / dhan';
COMMENT ON COLUMN orders.option_type IS 'CE / PE / FUT / EQ';
COMMENT ON COLUMN orders.quantity IS 'shares ordered';
COMMENT ON COLUMN orders.price IS 'limit price per share, INR (the latest after repricing)';
COMMENT ON COLUMN orders.status IS 'INITIALIZED, SUBMITTED, UNKNOWN, TRANSIT, PENDING, PART_TRADED, TRADED, REJECTED, CANCELLED, EXPIRED';
COMMENT ON COLUMN orders.version IS 'compare-and-set counter of updates';
COMMENT ON COLUMN orders.average_price IS 'volume-weighted over fills; null when nothing traded';
COMMENT ON COLUMN orders.adopted IS 'found at the broker by reconciliation, not placed by this store';

CREATE TABLE IF NOT EXISTS pipeline_failures (
	trade_date DATE NOT NULL, 
	asset VARCHAR(64) NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	stage VARCHAR(64) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	reason TEXT NOT NULL, 
	recorded_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (trade_date, asset, symbol, stage)
);

COMMENT ON TABLE pipeline_failures IS 'Per-symbol failures of a partition (the partition itself succeeded)';

CREATE TABLE IF NOT EXISTS portfolio_allocation_summary (
	allocation_id VARCHAR(64) NOT NULL, 
	trade_date DATE NOT NULL, 
	capital FLOAT NOT NULL, 
	capital_used FLOAT NOT NULL, 
	deployment FLOAT NOT NULL, 
	positions INTEGER NOT NULL, 
	expected_monthly_return FLOAT, 
	target_monthly_return FLOAT, 
	market_state VARCHAR(32), 
	risk_tolerance VARCHAR(16), 
	source VARCHAR(16), 
	rules TEXT NOT NULL, 
	industry_views TEXT NOT NULL, 
	summary TEXT, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (allocation_id)
);

CREATE INDEX IF NOT EXISTS ix_portfolio_allocation_summary_trade_date ON portfolio_allocation_summary (trade_date);

COMMENT ON TABLE portfolio_allocation_summary IS 'One row per allocation snapshot (immutable, append-only): its inputs and totals';
COMMENT ON COLUMN portfolio_allocation_summary.allocation_id IS 'sha256 of the canonical JSON of session, capital, rules, industry views, risk tolerance and positions (allocation/snapshot.py)';
COMMENT ON COLUMN portfolio_allocation_summary.expected_monthly_return IS 'fraction of capital';
COMMENT ON COLUMN portfolio_allocation_summary.risk_tolerance IS 'of the strategy candidates allocated';
COMMENT ON COLUMN portfolio_allocation_summary.source IS 'market-data source of the inputs (session_provenance)';
COMMENT ON COLUMN portfolio_allocation_summary.rules IS 'JSON: the resolved market_conditions.yaml rules used';
COMMENT ON COLUMN portfolio_allocation_summary.industry_views IS 'JSON: industry weights, LONG/SHORT views and symbol -> industry mapping used';
COMMENT ON COLUMN portfolio_allocation_summary.summary IS 'JSON: tiers, industries, limits, greeks, notes';

CREATE TABLE IF NOT EXISTS positions (
	allocation_id VARCHAR(64) NOT NULL, 
	position_id VARCHAR(128) NOT NULL, 
	leg INTEGER NOT NULL, 
	strategy_id VARCHAR(96), 
	symbol VARCHAR(32) NOT NULL, 
	security_id VARCHAR(32) NOT NULL, 
	expiry DATE, 
	strike FLOAT, 
	option_type VARCHAR(3), 
	entry_side VARCHAR(4), 
	quantity INTEGER NOT NULL, 
	average_price FLOAT, 
	entry_quantity INTEGER NOT NULL, 
	entry_price FLOAT, 
	buy_quantity INTEGER NOT NULL, 
	buy_value FLOAT NOT NULL, 
	sell_quantity INTEGER NOT NULL, 
	sell_value FLOAT NOT NULL, 
	realized_pnl FLOAT NOT NULL, 
	fees FLOAT NOT NULL, 
	opened_at TIMESTAMP WITH TIME ZONE, 
	closed_at TIMESTAMP WITH TIME ZONE, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (allocation_id, position_id, leg)
);

COMMENT ON TABLE positions IS 'Per allocation, position and leg: open quantity, entry prices and realized P&L, derived from trades';
COMMENT ON COLUMN positions.entry_side IS 'side of the entry order (BUY / SELL)';
COMMENT ON COLUMN positions.quantity IS 'open shares, signed: + long, - short';
COMMENT ON COLUMN positions.average_price IS 'average entry price of the open quantity, INR; null when flat';
COMMENT ON COLUMN positions.entry_quantity IS 'shares filled by entry orders';
COMMENT ON COLUMN positions.entry_price IS 'VWAP of the entry fills (across slices and partial fills)';
COMMENT ON COLUMN positions.buy_value IS 'INR';
COMMENT ON COLUMN positions.sell_value IS 'INR';
COMMENT ON COLUMN positions.realized_pnl IS 'INR, before fees (average cost)';
COMMENT ON COLUMN positions.fees IS 'INR, total of the fills'' charges';

CREATE TABLE IF NOT EXISTS sector_allocations_current (
	sector VARCHAR(64) NOT NULL, 
	weight FLOAT NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (sector)
);

COMMENT ON TABLE sector_allocations_current IS 'Current sector weights (sum of their industries'' weights)';

CREATE TABLE IF NOT EXISTS session_provenance (
	trade_date DATE NOT NULL, 
	asset VARCHAR(64) NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	written_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (trade_date, asset)
);

COMMENT ON TABLE session_provenance IS 'The market-data source behind each asset''s rows of a session (written in the asset''s own transaction): every row from fno_universe to portfolio_allocation joins here on (trade_date, asset)';

CREATE TABLE IF NOT EXISTS stock_industry_mapping (
	symbol VARCHAR(32) NOT NULL, 
	industry VARCHAR(96) NOT NULL, 
	sector VARCHAR(64) NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (symbol)
);

COMMENT ON TABLE stock_industry_mapping IS 'Industry and sector of each F&O underlying';

CREATE TABLE IF NOT EXISTS strategies (
	strategy_id VARCHAR(96) NOT NULL, 
	trade_date DATE NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	strategy_name VARCHAR(48) NOT NULL, 
	category VARCHAR(24), 
	outlook VARCHAR(16), 
	iv_preference VARCHAR(8), 
	risk_tolerance VARCHAR(16) NOT NULL, 
	market_state VARCHAR(32), 
	total_score FLOAT, 
	conviction VARCHAR(12), 
	rank INTEGER, 
	unlimited_risk BOOLEAN, 
	lots INTEGER, 
	lot_size INTEGER, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (strategy_id)
);

CREATE INDEX IF NOT EXISTS ix_strategies_trade_date ON strategies (trade_date);

COMMENT ON TABLE strategies IS 'Ranked strategy candidates per underlying and session';
COMMENT ON COLUMN strategies.rank IS '1 = best for the symbol';

CREATE TABLE IF NOT EXISTS strategy_details (
	strategy_id VARCHAR(96) NOT NULL, 
	leg INTEGER NOT NULL, 
	trade_date DATE NOT NULL, 
	side VARCHAR(4) NOT NULL, 
	instrument VARCHAR(3) NOT NULL, 
	strike FLOAT, 
	expiry DATE, 
	quantity INTEGER NOT NULL, 
	price FLOAT, 
	price_kind VARCHAR(8), 
	iv FLOAT, 
	delta FLOAT, 
	security_id VARCHAR(32), 
	PRIMARY KEY (strategy_id, leg)
);

CREATE INDEX IF NOT EXISTS ix_strategy_details_trade_date ON strategy_details (trade_date);

COMMENT ON TABLE strategy_details IS 'Legs of each strategy candidate';
COMMENT ON COLUMN strategy_details.quantity IS 'shares (lots x lot size)';
COMMENT ON COLUMN strategy_details.price IS 'executable price per share: ask to buy, bid to sell, mid if one-sided';

CREATE TABLE IF NOT EXISTS strategy_execution_status (
	allocation_id VARCHAR(64) NOT NULL, 
	position_id VARCHAR(128) NOT NULL, 
	position_no INTEGER, 
	strategy_id VARCHAR(96) NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	strategy_name VARCHAR(48), 
	approval_id VARCHAR(40), 
	broker VARCHAR(16) NOT NULL, 
	state VARCHAR(24) NOT NULL, 
	reason TEXT, 
	legs INTEGER, 
	entry_premium FLOAT, 
	fees FLOAT, 
	started_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	opened_at TIMESTAMP WITH TIME ZONE, 
	closed_at TIMESTAMP WITH TIME ZONE, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	realized_pnl FLOAT, 
	PRIMARY KEY (allocation_id, position_id)
);

CREATE INDEX IF NOT EXISTS ix_strategy_execution_status_state ON strategy_execution_status (state);

CREATE INDEX IF NOT EXISTS ix_strategy_execution_status_strategy_id ON strategy_execution_status (strategy_id);

COMMENT ON TABLE strategy_execution_status IS 'One row per executed strategy position (the seed''s table) with its state across legs';
COMMENT ON COLUMN strategy_execution_status.approval_id IS 'the approval whose execution started it';
COMMENT ON COLUMN strategy_execution_status.state IS 'PENDING, PARTIALLY_ESTABLISHED, OPEN, FAILED, UNWOUND, PARTIALLY_EXITED, CLOSED';
COMMENT ON COLUMN strategy_execution_status.entry_premium IS 'INR: sells minus buys of the entry fills (> 0 credit)';
COMMENT ON COLUMN strategy_execution_status.realized_pnl IS 'INR: realized P&L of every leg (exits and settlements) less every fee; final once CLOSED';

CREATE TABLE IF NOT EXISTS strategy_exit_levels (
	strategy_id VARCHAR(96) NOT NULL, 
	trade_date DATE NOT NULL, 
	profit_target FLOAT, 
	profit_target_pct FLOAT, 
	scale_out TEXT, 
	stop_loss FLOAT, 
	stop_loss_pct FLOAT, 
	time_exit_dte INTEGER, 
	time_exit_date DATE, 
	trailing_activation FLOAT, 
	trailing_distance FLOAT, 
	adjustments TEXT, 
	PRIMARY KEY (strategy_id)
);

CREATE INDEX IF NOT EXISTS ix_strategy_exit_levels_trade_date ON strategy_exit_levels (trade_date);

COMMENT ON TABLE strategy_exit_levels IS 'Exit levels per strategy candidate';
COMMENT ON COLUMN strategy_exit_levels.profit_target IS 'INR P&L at which to take profit (primary)';
COMMENT ON COLUMN strategy_exit_levels.profit_target_pct IS 'share of max profit (or of debit for unbounded)';
COMMENT ON COLUMN strategy_exit_levels.scale_out IS 'JSON: [{at_pct, pnl, close_fraction}] at 25/50/75%';
COMMENT ON COLUMN strategy_exit_levels.stop_loss IS 'INR loss that triggers the stop (positive)';
COMMENT ON COLUMN strategy_exit_levels.stop_loss_pct IS 'share of max loss (or of credit/debit where unbounded)';
COMMENT ON COLUMN strategy_exit_levels.trailing_activation IS 'INR profit at which a trailing stop arms';
COMMENT ON COLUMN strategy_exit_levels.trailing_distance IS 'INR give-back allowed once armed';
COMMENT ON COLUMN strategy_exit_levels.adjustments IS 'JSON: breakeven and short-strike delta triggers';

CREATE TABLE IF NOT EXISTS strategy_monitoring (
	as_of TIMESTAMP WITH TIME ZONE NOT NULL, 
	strategy_key VARCHAR(128) NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	trade_date DATE NOT NULL, 
	strategy_id VARCHAR(96) NOT NULL, 
	allocation_id VARCHAR(64) NOT NULL, 
	position_id VARCHAR(128) NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	strategy_name VARCHAR(48), 
	state VARCHAR(24), 
	mode VARCHAR(16) NOT NULL, 
	spot FLOAT, 
	pnl_mid FLOAT, 
	pnl_close FLOAT, 
	realized_net FLOAT, 
	fees FLOAT, 
	pnl_pct_max_loss FLOAT, 
	pnl_pct_capital FLOAT, 
	max_loss FLOAT, 
	max_profit FLOAT, 
	front_dte INTEGER, 
	days_in_trade INTEGER, 
	delta FLOAT, 
	gamma FLOAT, 
	vega FLOAT, 
	theta FLOAT, 
	quotes_missing INTEGER, 
	action VARCHAR(16), 
	urgency VARCHAR(8), 
	rule VARCHAR(32), 
	intent_key VARCHAR(192), 
	reason TEXT, 
	decisions TEXT, 
	recorded_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (as_of, strategy_key, source)
);

CREATE INDEX IF NOT EXISTS ix_strategy_monitoring_trade_date ON strategy_monitoring (trade_date);

COMMENT ON TABLE strategy_monitoring IS 'One snapshot per open strategy per monitoring cycle (the seed''s table): P&L, DTE, greeks and the primary decision';
COMMENT ON COLUMN strategy_monitoring.as_of IS 'the time the quotes were valued at';
COMMENT ON COLUMN strategy_monitoring.source IS 'sensor / realtime / cli';
COMMENT ON COLUMN strategy_monitoring.state IS 'the strategy''s execution state after the cycle';
COMMENT ON COLUMN strategy_monitoring.pnl_mid IS 'INR at the mark: unrealized + realized - fees';
COMMENT ON COLUMN strategy_monitoring.pnl_close IS 'INR at the close-out prices (bid to sell, ask to buy)';
COMMENT ON COLUMN strategy_monitoring.realized_net IS 'INR realized less every fee paid';
COMMENT ON COLUMN strategy_monitoring.pnl_pct_max_loss IS 'pnl_close / max loss';
COMMENT ON COLUMN strategy_monitoring.front_dte IS 'calendar days to the front expiry';
COMMENT ON COLUMN strategy_monitoring.delta IS 'shares of the underlying';
COMMENT ON COLUMN strategy_monitoring.vega IS 'INR per vol point';
COMMENT ON COLUMN strategy_monitoring.theta IS 'INR per calendar day';
COMMENT ON COLUMN strategy_monitoring.action IS 'the primary decision';
COMMENT ON COLUMN strategy_monitoring.decisions IS 'JSON: every rule that fired [{action, rule, level, urgency, lots, reason}]';

CREATE TABLE IF NOT EXISTS strategy_parameters (
	strategy_id VARCHAR(96) NOT NULL, 
	trade_date DATE NOT NULL, 
	net_premium FLOAT, 
	max_profit FLOAT, 
	max_loss FLOAT, 
	breakevens TEXT, 
	pop FLOAT, 
	pop_forward FLOAT, 
	pop_sigma FLOAT, 
	pop_t_years FLOAT, 
	expected_value FLOAT, 
	reward_risk FLOAT, 
	delta FLOAT, 
	gamma FLOAT, 
	theta FLOAT, 
	vega FLOAT, 
	margin FLOAT, 
	return_on_margin FLOAT, 
	score_components TEXT, 
	details TEXT, 
	PRIMARY KEY (strategy_id)
);

CREATE INDEX IF NOT EXISTS ix_strategy_parameters_trade_date ON strategy_parameters (trade_date);

COMMENT ON TABLE strategy_parameters IS 'Metrics of each strategy candidate';
COMMENT ON COLUMN strategy_parameters.net_premium IS 'INR for the position; > 0 credit, < 0 debit';
COMMENT ON COLUMN strategy_parameters.max_profit IS 'INR; null = unbounded';
COMMENT ON COLUMN strategy_parameters.max_loss IS 'INR, positive; null = unbounded';
COMMENT ON COLUMN strategy_parameters.breakevens IS 'JSON list of underlying prices';
COMMENT ON COLUMN strategy_parameters.pop IS 'probability of profit at expiry, 0..1';
COMMENT ON COLUMN strategy_parameters.expected_value IS 'INR under the POP model';
COMMENT ON COLUMN strategy_parameters.delta IS 'position delta in shares of the underlying';
COMMENT ON COLUMN strategy_parameters.theta IS 'INR per calendar day';
COMMENT ON COLUMN strategy_parameters.vega IS 'INR per 1 vol point';
COMMENT ON COLUMN strategy_parameters.margin IS 'SPAN-like estimate, INR (debit for long-only)';
COMMENT ON COLUMN strategy_parameters.score_components IS 'JSON of the scoring components 0..1';
COMMENT ON COLUMN strategy_parameters.details IS 'JSON: model inputs, strike-selection fallback levels';

CREATE TABLE IF NOT EXISTS technical_signals (
	trade_date DATE NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	close FLOAT, 
	ema20 FLOAT, 
	ema50 FLOAT, 
	ema200 FLOAT, 
	rsi14 FLOAT, 
	macd FLOAT, 
	macd_signal FLOAT, 
	macd_hist FLOAT, 
	bb_width FLOAT, 
	atr14 FLOAT, 
	atr_pct FLOAT, 
	volume_ratio FLOAT, 
	consolidation BOOLEAN, 
	breakout VARCHAR(8), 
	direction VARCHAR(8), 
	strength FLOAT, 
	iv_environment VARCHAR(8), 
	market_state VARCHAR(32), 
	volatility_bucket VARCHAR(12), 
	liquidity_bucket VARCHAR(8), 
	rv_20 FLOAT, 
	notes TEXT, 
	PRIMARY KEY (trade_date, symbol)
);

COMMENT ON TABLE technical_signals IS 'Technical indicators, direction and market state per underlying and session';
COMMENT ON COLUMN technical_signals.breakout IS 'UP / DOWN / null';
COMMENT ON COLUMN technical_signals.direction IS 'BULLISH / NEUTRAL / BEARISH';
COMMENT ON COLUMN technical_signals.strength IS '0..1';
COMMENT ON COLUMN technical_signals.market_state IS 'direction x IV environment (nine states)';

CREATE TABLE IF NOT EXISTS underlying_bars (
	symbol VARCHAR(32) NOT NULL, 
	date DATE NOT NULL, 
	open FLOAT, 
	high FLOAT, 
	low FLOAT, 
	close FLOAT NOT NULL, 
	volume FLOAT, 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (symbol, date)
);

CREATE INDEX IF NOT EXISTS ix_underlying_bars_date ON underlying_bars (date);

COMMENT ON TABLE underlying_bars IS 'Daily OHLCV of every underlying (a year back from each materialized session)';

CREATE TABLE IF NOT EXISTS allocation_approvals (
	approval_id VARCHAR(40) NOT NULL, 
	allocation_id VARCHAR(64) NOT NULL, 
	position_set VARCHAR(64) NOT NULL, 
	position_ids TEXT, 
	approved_by VARCHAR(64) NOT NULL, 
	approved_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (approval_id), 
	CONSTRAINT uq_allocation_approvals_position_set UNIQUE (allocation_id, position_set), 
	FOREIGN KEY(allocation_id) REFERENCES portfolio_allocation_summary (allocation_id)
);

CREATE INDEX IF NOT EXISTS ix_allocation_approvals_allocation_id ON allocation_approvals (allocation_id);

COMMENT ON TABLE allocation_approvals IS 'Approvals of an allocation snapshot (or some of its positions) for execution (the seed''s mark_for_execution); append-only';
COMMENT ON COLUMN allocation_approvals.approval_id IS 'deterministic: ap- + sha256 of (allocation_id, position_set); the sensor''s run key';
COMMENT ON COLUMN allocation_approvals.position_set IS '''*'' = every position, else sha256 of the sorted position_ids';
COMMENT ON COLUMN allocation_approvals.position_ids IS 'JSON list of the approved position_ids; null = all';

CREATE TABLE IF NOT EXISTS order_events (
	id SERIAL NOT NULL, 
	correlation_id VARCHAR(32) NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	from_status VARCHAR(16), 
	to_status VARCHAR(16), 
	source VARCHAR(16) NOT NULL, 
	payload TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(correlation_id) REFERENCES orders (correlation_id)
);

CREATE INDEX IF NOT EXISTS ix_order_events_correlation_id ON order_events (correlation_id);

COMMENT ON TABLE order_events IS 'Append-only log of every order state change and broker message';
COMMENT ON COLUMN order_events.source IS 'local / broker / reconcile / check';
COMMENT ON COLUMN order_events.payload IS 'JSON: the request, the broker''s answer or message';

CREATE TABLE IF NOT EXISTS portfolio_allocation (
	allocation_id VARCHAR(64) NOT NULL, 
	position_id VARCHAR(128) NOT NULL, 
	trade_date DATE NOT NULL, 
	strategy_id VARCHAR(96) NOT NULL, 
	symbol VARCHAR(32) NOT NULL, 
	strategy_name VARCHAR(48) NOT NULL, 
	tier VARCHAR(8) NOT NULL, 
	industry VARCHAR(96), 
	sector VARCHAR(64), 
	position_type VARCHAR(8), 
	category VARCHAR(24), 
	outlook VARCHAR(16), 
	conviction VARCHAR(12), 
	total_score FLOAT, 
	fallback_level INTEGER, 
	selection_reason TEXT, 
	lots INTEGER NOT NULL, 
	lot_size INTEGER, 
	quantity INTEGER, 
	margin_per_lot FLOAT, 
	capital_used FLOAT NOT NULL, 
	weight FLOAT, 
	kelly_fraction FLOAT, 
	pop FLOAT, 
	payoff_ratio FLOAT, 
	expected_value FLOAT, 
	expected_return FLOAT, 
	max_loss FLOAT, 
	unlimited_risk BOOLEAN, 
	t_years FLOAT, 
	delta FLOAT, 
	gamma FLOAT, 
	theta FLOAT, 
	vega FLOAT, 
	capital FLOAT NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (allocation_id, position_id), 
	FOREIGN KEY(allocation_id) REFERENCES portfolio_allocation_summary (allocation_id)
);

CREATE INDEX IF NOT EXISTS ix_portfolio_allocation_trade_date ON portfolio_allocation (trade_date);

COMMENT ON TABLE portfolio_allocation IS 'Positions of an allocation snapshot (append-only: a snapshot''s rows are never changed; execution status lives in the trading tables)';
COMMENT ON COLUMN portfolio_allocation.allocation_id IS 'the snapshot (portfolio_allocation_summary)';
COMMENT ON COLUMN portfolio_allocation.position_id IS 'the position within the snapshot';
COMMENT ON COLUMN portfolio_allocation.fallback_level IS '0 preferred strategy .. 3 any not opposing the view';
COMMENT ON COLUMN portfolio_allocation.selection_reason IS 'why this strategy: market-state preference, category fallback, view match or any-strategy';
COMMENT ON COLUMN portfolio_allocation.quantity IS 'shares per leg unit (lots x lot size)';
COMMENT ON COLUMN portfolio_allocation.margin_per_lot IS 'INR: margin for short premium, debit for long';
COMMENT ON COLUMN portfolio_allocation.capital_used IS 'INR';
COMMENT ON COLUMN portfolio_allocation.weight IS 'capital_used / capital';
COMMENT ON COLUMN portfolio_allocation.expected_value IS 'INR over the position''s life';
COMMENT ON COLUMN portfolio_allocation.expected_return IS 'INR per month';
COMMENT ON COLUMN portfolio_allocation.max_loss IS 'INR; null = unbounded';
COMMENT ON COLUMN portfolio_allocation.capital IS 'INR allocated over';

CREATE TABLE IF NOT EXISTS portfolio_allocation_runs (
	run_id VARCHAR(64) NOT NULL, 
	materialized_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	trade_date DATE NOT NULL, 
	allocation_id VARCHAR(64), 
	PRIMARY KEY (run_id, materialized_at), 
	FOREIGN KEY(allocation_id) REFERENCES portfolio_allocation_summary (allocation_id)
);

CREATE INDEX IF NOT EXISTS ix_portfolio_allocation_runs_trade_date ON portfolio_allocation_runs (trade_date);

COMMENT ON TABLE portfolio_allocation_runs IS 'Append-only log of portfolio_allocation materializations: the latest row of a session names its latest snapshot';
COMMENT ON COLUMN portfolio_allocation_runs.run_id IS 'the Dagster run';
COMMENT ON COLUMN portfolio_allocation_runs.allocation_id IS 'the snapshot this materialization gave; null = no candidates to allocate';

CREATE TABLE IF NOT EXISTS trades (
	broker VARCHAR(16) NOT NULL, 
	trade_id VARCHAR(64) NOT NULL, 
	correlation_id VARCHAR(32) NOT NULL, 
	broker_order_id VARCHAR(64), 
	allocation_id VARCHAR(64), 
	position_id VARCHAR(128), 
	strategy_id VARCHAR(96), 
	leg INTEGER, 
	purpose VARCHAR(8), 
	security_id VARCHAR(32) NOT NULL, 
	symbol VARCHAR(32), 
	expiry DATE, 
	strike FLOAT, 
	option_type VARCHAR(3), 
	side VARCHAR(4) NOT NULL, 
	quantity INTEGER NOT NULL, 
	price FLOAT NOT NULL, 
	brokerage FLOAT, 
	stt FLOAT, 
	exchange_charges FLOAT, 
	sebi_fees FLOAT, 
	stamp_duty FLOAT, 
	gst FLOAT, 
	fees FLOAT NOT NULL, 
	traded_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	recorded_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (broker, trade_id), 
	FOREIGN KEY(correlation_id) REFERENCES orders (correlation_id)
);

CREATE INDEX IF NOT EXISTS ix_trades_allocation_id ON trades (allocation_id);

CREATE INDEX IF NOT EXISTS ix_trades_correlation_id ON trades (correlation_id);

COMMENT ON TABLE trades IS 'Fills (the seed''s table name): one row per trade, unique per broker; append-only';
COMMENT ON COLUMN trades.quantity IS 'shares';
COMMENT ON COLUMN trades.price IS 'INR per share';
COMMENT ON COLUMN trades.fees IS 'INR, total of the charges above';
