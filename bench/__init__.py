"""`make bench`: how fast the pipeline is, measured side by side with the broker's own
ceiling in one run on one machine. `python -m bench --help` lists the knobs."""
