"""The run store, reported numbers, leaderboards and plots."""
