"""The paper/live trading service: the loop, its risk controls, state, local HTTP API and monitoring."""
