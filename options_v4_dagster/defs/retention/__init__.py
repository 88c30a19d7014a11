"""Retention: the ``archive_contract_rows`` job and its schedule (off by default), moving old sessions'
option_chain_data and option_greeks rows to Parquet (store/archive.py; ``options-v4 archive``)."""
