"""Latency, accuracy and environment measurement. Imports no torch: this is the
path `compressor bench` runs on an edge device with only a runtime installed."""
