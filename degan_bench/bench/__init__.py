"""Speed evidence: the bench suite behind ``degan-bench bench`` (cases, the real training step outside
the loop, timing, official-code adapters, fid throughput, the JSON report) and the training FLOPs count
the cost model extrapolates with."""
