"""State: windowed and keyed tables and the pure window/aggregation logic behind them."""
