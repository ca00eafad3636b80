"""The run_trigger task (see app/runs.py)."""
