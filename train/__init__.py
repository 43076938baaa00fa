"""lavalamp.train: footage ingestion, the simulator, training stages and evaluation."""
