"""The command line and what only it needs: the demo, the benchmark command and the run report."""
