"""The live dashboard of the windows (Dash), fed from Kafka only."""
