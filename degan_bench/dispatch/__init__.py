"""Running many recipes: job expansion, local GPU queues and cluster submission.

- :mod:`~degan_bench.dispatch.jobs`: tables -> (recipe x seed) jobs, their state on disk, cost estimates;
- :mod:`~degan_bench.dispatch.local`: a subprocess queue, one job per GPU (or sequential on the CPU);
- :mod:`~degan_bench.dispatch.slurm`: an sbatch job array that resumes across allocations.
"""
