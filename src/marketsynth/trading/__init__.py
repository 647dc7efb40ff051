"""Trading: strategies, the backtest engine, costs, performance metrics and the tearsheet."""
